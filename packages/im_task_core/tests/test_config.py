"""Settings: sources and their precedence, validation, production safety, and transports by name."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

import im_task.config
import im_task.runtime
from im_task import ConfigurationError, EnqueueError, configure
from im_task.config import get_keyring, get_settings, set_framework_settings
from im_task.local_target import get_local_target, register_local_target
from im_task.runtime import check_configuration, get_transport
from im_task.setting_values import DEFAULT_MAX_BODY_SIZE, SETTING_NAMES
from im_task.transports import ImmediateTransport, LocalTransport, RecordingTransport, TaskRequest, Transport


def test_defaults(tmp_path: Path) -> None:
    im_task.config.reset()
    settings = get_settings()
    assert settings.transport is None
    assert settings.secrets == ()
    assert settings.data_dir == Path(".im_task")
    assert settings.max_body_size == DEFAULT_MAX_BODY_SIZE == 1024 * 1024
    assert settings.warmup_module is None
    assert settings.default_queue == "default"
    assert settings.environment == "development"
    assert not settings.production


def test_configure_wins_over_framework_over_environment_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings().default_queue == "default"
    monkeypatch.setenv("IM_TASK_DEFAULT_QUEUE", "from-env")
    configure(data_dir=get_settings().data_dir)  # any configure() call forgets the resolved settings
    assert get_settings().default_queue == "from-env"
    set_framework_settings({"default_queue": "from-framework"}, source="settings.IM_TASK")
    assert get_settings().default_queue == "from-framework"
    configure(default_queue="from-configure")
    assert get_settings().default_queue == "from-configure"
    configure(default_queue=None)  # None hands the setting back to the next source
    assert get_settings().default_queue == "from-framework"
    set_framework_settings({}, source="settings.IM_TASK")  # the framework layer is replaced as a whole
    assert get_settings().default_queue == "from-env"
    monkeypatch.delenv("IM_TASK_DEFAULT_QUEUE")
    configure(default_queue=None)
    assert get_settings().default_queue == "default"


def test_configure_changes_only_the_settings_given() -> None:
    configure(default_queue="q1", max_body_size=4096)
    configure(warmup_module="json")
    settings = get_settings()
    assert (settings.default_queue, settings.max_body_size, settings.warmup_module) == ("q1", 4096, "json")


def test_framework_none_values_are_ignored() -> None:
    set_framework_settings({"default_queue": None, "max_body_size": 2048}, source="app.config")
    assert get_settings().default_queue == "default"
    assert get_settings().max_body_size == 2048


def test_unknown_setting_is_refused_naming_it_and_the_source() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"configure\(\): unknown setting 'secrte' \(did you mean 'secret'\?\); known: transport",
    ):
        configure(secrte="x" * 20)
    with pytest.raises(ConfigurationError, match=r"settings.IM_TASK: unknown setting 'QUEUE'"):
        set_framework_settings({"QUEUE": "q"}, source="settings.IM_TASK")
    assert set(SETTING_NAMES) == {
        "transport",
        "secret",
        "data_dir",
        "max_body_size",
        "warmup_module",
        "default_queue",
        "environment",
        "project",
        "location",
        "base_url",
        "service_account_email",
        "audience",
        "background_service",
        "front_authenticated",
        "accept_legacy_payloads",
        "payload_store",
        "envelope_lifetime",
        "accept_unbound_envelopes",
        "dead_letter_store",
        "log_outcomes",
    }


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("project", "My Project", r"project must be a Google Cloud id such as 'my-project'"),
        ("location", "europe-west1", None),
        ("location", "Europe West", r"location must be a Google Cloud id"),
        ("base_url", "app.example.com", r"base_url must be an absolute http\(s\) URL"),
        ("base_url", "https://app.example.com/?a=1", r"without query or fragment"),
        ("service_account_email", "tasks", r"service_account_email must be an email such as"),
        ("audience", "  ", r"audience must be a non-empty string"),
        ("front_authenticated", "maybe", r"front_authenticated must be True or False"),
    ],
)
def test_google_cloud_settings_are_checked(setting: str, value: object, message: str | None) -> None:
    if message is None:
        configure(**{setting: value})
        assert getattr(get_settings(), setting) == value
        return
    with pytest.raises(ConfigurationError, match=message):
        configure(**{setting: value})


def test_google_cloud_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IM_TASK_PROJECT", "example.com:legacy-project")
    monkeypatch.setenv("IM_TASK_BASE_URL", "https://app.example.com/")
    monkeypatch.setenv("IM_TASK_FRONT_AUTHENTICATED", "true")
    monkeypatch.setenv("IM_TASK_SERVICE_ACCOUNT_EMAIL", "tasks@p.iam.gserviceaccount.com")
    im_task.config.reset()
    settings = get_settings()
    assert settings.project == "example.com:legacy-project"
    assert settings.base_url == "https://app.example.com"
    assert settings.front_authenticated is True
    assert settings.service_account_email == "tasks@p.iam.gserviceaccount.com"
    assert (settings.location, settings.audience, settings.background_service) == (None, None, None)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("transport", 42, r"one of 'local', 'immediate', 'recording', 'cloudtasks'"),
        ("transport", RecordingTransport, r"transport must be a Transport instance"),
        ("secret", 123, r"secret must be a str, bytes, or a non-empty list"),
        ("secret", "too-short", r"at least 32 bytes"),
        ("data_dir", 3, r"data_dir must be a path, not int"),
        ("max_body_size", 1023, r"max_body_size must be a whole number of bytes >= 1024"),
        ("max_body_size", 0, r"max_body_size must be a whole number"),
        ("max_body_size", -5000, r"max_body_size must be a whole number"),
        ("max_body_size", True, r"max_body_size must be a whole number"),
        ("max_body_size", "lots", r"max_body_size must be a whole number"),
        ("warmup_module", "", r"warmup_module must be a non-empty string"),
        ("warmup_module", 3, r"warmup_module must be a non-empty string"),
        ("default_queue", "", r"default_queue must be"),
        ("default_queue", 7, r"default_queue must be"),
        ("default_queue", "not a queue", r"default_queue"),
        ("environment", "staging", r"environment must be 'development' or 'production', not 'staging'"),
        ("environment", True, r"environment must be"),
    ],
)
def test_bad_values_are_refused_and_nothing_changes(setting: str, value: Any, message: str) -> None:
    configure(default_queue="kept")
    before = get_settings()
    with pytest.raises(ConfigurationError, match=message):
        configure(**{setting: value})
    with pytest.raises(ConfigurationError, match=f"app.config.*{message}"):
        set_framework_settings({setting: value}, source="app.config")
    with pytest.raises(ConfigurationError):
        configure(**{"data_dir": "/changed", setting: value})
    assert get_settings() == before


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("IM_TASK_MAX_BODY_SIZE", "big", r"\$IM_TASK_MAX_BODY_SIZE: max_body_size must be"),
        ("IM_TASK_MAX_BODY_SIZE", "100", r"\$IM_TASK_MAX_BODY_SIZE: max_body_size must be"),
        ("IM_TASK_ENV", "prod", r"environment must be 'development' or 'production', not 'prod'"),
        ("IM_TASK_SECRET", "short", r"\$IM_TASK_SECRET: a secret must be at least 32 bytes"),
    ],
)
def test_bad_environment_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    im_task.config.reset()
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=message):
        get_settings()


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    im_task.config.reset()
    monkeypatch.setenv("IM_TASK_TRANSPORT", "recording")
    monkeypatch.setenv("IM_TASK_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("IM_TASK_MAX_BODY_SIZE", "2048")
    monkeypatch.setenv("IM_TASK_WARMUP_MODULE", "json")
    monkeypatch.setenv("IM_TASK_DEFAULT_QUEUE", "env-queue")
    monkeypatch.setenv("IM_TASK_SECRET", "an-environment-secret-0123456789abc")
    monkeypatch.setenv("IM_TASK_ENV", "production")
    settings = get_settings()
    assert settings.transport == "recording"
    assert settings.data_dir == tmp_path / "env-data"
    assert settings.max_body_size == 2048
    assert settings.warmup_module == "json"
    assert settings.default_queue == "env-queue"
    assert settings.secrets == (b"an-environment-secret-0123456789abc",)
    assert settings.production
    assert isinstance(get_transport(), RecordingTransport)


def test_empty_environment_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    im_task.config.reset()
    monkeypatch.setenv("IM_TASK_DEFAULT_QUEUE", "")
    monkeypatch.setenv("IM_TASK_ENV", "")
    assert get_settings().default_queue == "default"
    assert get_settings().environment == "development"


def test_app_engine_standard_means_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAE_ENV", "standard")
    configure(environment=None)
    assert get_settings().production
    monkeypatch.setenv("IM_TASK_ENV", "development")  # explicit beats the guess
    configure(environment=None)
    assert not get_settings().production
    configure(environment="production")
    assert get_settings().production


@pytest.mark.parametrize("how", ["configure", "env", "app_engine"])
def test_production_without_secret_is_refused_saying_what_to_set(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    configure(secret=None, transport=RecordingTransport())
    if how == "configure":
        configure(environment="production")
    elif how == "env":
        monkeypatch.setenv("IM_TASK_ENV", "production")
        configure(environment=None)
    else:
        monkeypatch.setenv("GAE_ENV", "standard")
        configure(environment=None)
    expected = r"No secret is configured and this is production.*Set IM_TASK_SECRET.*configure\(secret=...\)"
    with pytest.raises(ConfigurationError, match=expected):
        get_keyring()
    with pytest.raises(ConfigurationError, match=expected):
        check_configuration()
    assert not (get_settings().data_dir / "secret").exists()  # no local secret made in production
    configure(secret="a-production-secret-0123456789abcdef", front_authenticated=True)  # a caller check is needed too
    check_configuration()
    assert get_keyring().signing_key == b"a-production-secret-0123456789abcdef"


def test_app_engine_defaults_to_cloud_tasks_which_needs_a_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAE_ENV", "standard")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("GAE_APPLICATION", raising=False)
    configure(environment=None)
    with pytest.raises(ConfigurationError, match="The Cloud Tasks transport needs a project: set IM_TASK_PROJECT"):
        check_configuration()


def test_development_needs_no_configuration(tmp_path: Path) -> None:
    configure(secret=None, transport="recording")
    check_configuration()
    assert (tmp_path / "secret").exists()


@pytest.mark.parametrize(("name", "kind"), [("immediate", ImmediateTransport), ("recording", RecordingTransport)])
def test_transport_by_name(name: str, kind: type[Transport]) -> None:
    configure(transport=name)
    transport = get_transport()
    assert type(transport) is kind
    assert get_transport() is transport


def test_local_transport_is_the_default_and_lives_in_the_data_dir(tmp_path: Path) -> None:
    transport = get_transport()
    assert isinstance(transport, LocalTransport)
    im_task.config.reset()  # closes the transport it made
    assert any(p.name.startswith("queue.sqlite3") for p in tmp_path.iterdir())


class _Custom(Transport):
    def enqueue(self, request: TaskRequest) -> str | None:
        return "custom"


@pytest.fixture
def factory_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("im_task_test_transports")
    module.make = _Custom  # type: ignore[attr-defined]
    module.instance = _Custom()  # type: ignore[attr-defined]
    module.not_a_transport = lambda: "nope"  # type: ignore[attr-defined]
    module.constant = 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_transport_by_import_path(factory_module: types.ModuleType) -> None:
    configure(transport="im_task_test_transports:make")
    assert type(get_transport()) is _Custom
    configure(transport="im_task_test_transports:instance")
    assert get_transport() is factory_module.instance


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nonsense", r"'nonsense' is neither a built-in name nor of the form 'local', 'immediate', 'recording', 'cl"),
        ("Immediate", r"is neither a built-in name"),
        ("no_such_module_anywhere:make", r"'no_such_module_anywhere:make' cannot be imported"),
        ("im_task_test_transports:missing", r"names 'missing', which im_task_test_transports does not define"),
        ("im_task_test_transports:not_a_transport", r"gave str, not a Transport"),
        ("im_task_test_transports:constant", r"names a value of type int, not a Transport or a factory"),
    ],
)
def test_bad_transport_names(factory_module: types.ModuleType, name: str, message: str) -> None:
    configure(transport=name)
    with pytest.raises(ConfigurationError, match=message):
        get_transport()
    with pytest.raises(ConfigurationError, match=message):
        check_configuration()


def test_a_transport_made_from_a_name_is_closed_when_its_settings_change(tmp_path: Path) -> None:
    configure(transport="recording")
    made = get_transport()
    configure(data_dir=tmp_path / "elsewhere")
    with pytest.raises(EnqueueError, match="closed"):
        made.enqueue(TaskRequest(queue="q", url="/x", body=b""))
    assert get_transport() is not made


def test_other_settings_keep_the_transport() -> None:
    configure(transport="recording")
    made = get_transport()
    configure(default_queue="other", max_body_size=4096)
    assert get_transport() is made
    assert made.enqueue(TaskRequest(queue="q", url="/x", body=b"")) is not None


def test_a_transport_given_as_an_instance_is_not_closed() -> None:
    given = RecordingTransport()
    configure(transport=given)
    assert get_transport() is given
    im_task.config.reset()
    assert given.enqueue(TaskRequest(queue="q", url="/x", body=b"")) is not None


def test_register_local_target() -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        return []

    assert get_local_target() is None
    register_local_target(app)
    assert get_local_target() is app
    register_local_target(None)
    assert get_local_target() is None
    register_local_target(app)
    im_task.config.reset()
    assert get_local_target() is None
    with pytest.raises(ConfigurationError, match="must be a WSGI callable, not str"):
        register_local_target("http://example.com")  # type: ignore[arg-type]


def test_set_up_framework_applies_settings_and_registers_the_target() -> None:
    def app(environ: object, start_response: object) -> list[bytes]:
        return []

    im_task.runtime.set_up_framework({"default_queue": "web"}, source="app.config", local_target=app)
    assert im_task.config.get_settings().default_queue == "web"
    assert get_local_target() is app


def test_set_up_framework_refuses_unsafe_configuration_and_keeps_the_previous_target() -> None:
    def previous(environ: object, start_response: object) -> list[bytes]:
        return []

    def app(environ: object, start_response: object) -> list[bytes]:
        return []

    register_local_target(previous)
    im_task.config.configure(secret=None)
    with pytest.raises(ConfigurationError, match="No secret is configured and this is production"):
        im_task.runtime.set_up_framework({"environment": "production"}, source="app.config", local_target=app)
    assert get_local_target() is previous


def test_settings_never_show_the_secret_in_their_repr() -> None:
    configure(secret=["rotated-in-secret-value-0123456789abcdef", "rotated-out-secret-value-0123456789abcdef"])
    text = repr(im_task.config.get_settings()) + repr(im_task.config.get_keyring())
    assert "secret-value" not in text


def test_set_up_framework_sets_the_route_and_puts_everything_back_on_refusal() -> None:
    from im_task import get_taskroute, set_taskroute

    def app(environ: object, start_response: object) -> list[bytes]:
        return []

    im_task.config.set_framework_settings({"default_queue": "before"}, source="earlier app")
    set_taskroute("/before")
    im_task.config.configure(secret=None)
    with pytest.raises(ConfigurationError, match="production"):
        im_task.runtime.set_up_framework(
            {"environment": "production", "default_queue": "after"}, source="app", local_target=app, route="/after"
        )
    assert get_taskroute() == "/before"
    assert im_task.config.get_settings().default_queue == "before"
    assert get_local_target() is None

    im_task.config.configure(secret="a-valid-secret-0123456789abcdefgh")
    im_task.runtime.set_up_framework({"default_queue": "after"}, source="app", local_target=app, route="after/")
    assert get_taskroute() == "/after"
    assert im_task.config.get_settings().default_queue == "after"


def test_changing_settings_while_a_task_enqueues_does_not_deadlock(tmp_path: Path) -> None:
    import threading

    import core_chain_tasks
    from im_task.wsgi import TaskWSGIApp

    for event in (core_chain_tasks.started, core_chain_tasks.release, core_chain_tasks.followed_up):
        event.clear()
    configure(data_dir=tmp_path / "first")  # the default transport: a LocalTransport the settings own
    register_local_target(TaskWSGIApp())
    core_chain_tasks.chain()
    assert core_chain_tasks.started.wait(10)

    # Moving data_dir drops the owned transport, and closing it waits for the delivery in flight,
    # whose task is about to enqueue (reading the settings).
    changer = threading.Thread(target=configure, kwargs={"data_dir": tmp_path / "second"}, daemon=True)
    changer.start()
    core_chain_tasks.release.set()
    changer.join(20)

    assert not changer.is_alive(), "configure() deadlocked with the delivery in flight"
    assert core_chain_tasks.followed_up.wait(20)


@pytest.mark.parametrize(
    ("variables", "environment"),
    [
        ({"GAE_ENV": "standard"}, "production"),
        ({"GAE_ENV": "flex"}, "production"),
        ({"K_SERVICE": "my-service"}, "production"),
        ({"GAE_ENV": "localdev"}, "development"),
        ({}, "development"),
    ],
)
def test_google_cloud_runtimes_default_to_production(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], environment: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    im_task.config.reset()
    assert im_task.config.get_settings().environment == environment
