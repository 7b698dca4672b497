"""System checks: each one firing, and not firing."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from im_task import ConfigurationError, config, configure, local_target, runtime
from im_task.transports import LocalTransport, RecordingTransport


def check_ids(*, include_deployment_checks: bool = False) -> set[str]:
    messages = run_checks(include_deployment_checks=include_deployment_checks)
    return {message.id for message in messages if message.id and message.id.startswith("im_task.")}


def test_the_test_project_passes() -> None:
    assert check_ids() == set()
    assert check_ids(include_deployment_checks=True) == set()  # a secret is configured


def test_e001_to_e003_invalid_settings() -> None:
    with override_settings(IM_TASK="secret"):
        assert check_ids() == {"im_task.E001"}
    with override_settings(IM_TASK={"not_a_key": 1}):
        assert check_ids() == {"im_task.E002"}
    with override_settings(IM_TASK={"default_queue": "mail"}):
        assert check_ids() == {"im_task.E002"}
        [message] = [m for m in run_checks() if m.id == "im_task.E002"]
        assert message.msg == "settings.IM_TASK: 'default_queue' must be written 'DEFAULT_QUEUE'."
    with override_settings(IM_TASK={"MAX_BODY_SIZE": 10}):
        assert check_ids() == {"im_task.E003"}
        [message] = [m for m in run_checks() if m.id == "im_task.E003"]
        assert "max_body_size" in message.msg
        assert message.hint


def test_e003_invalid_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IM_TASK_MAX_BODY_SIZE", "big")
    config.configure(max_body_size=None)  # settings are resolved again, from the environment
    messages = [m for m in run_checks() if m.id == "im_task.E003"]
    assert len(messages) == 1
    assert "IM_TASK_MAX_BODY_SIZE" in messages[0].msg
    monkeypatch.delenv("IM_TASK_MAX_BODY_SIZE")
    config.configure(max_body_size=None)
    assert check_ids() == set()


def test_e004_no_secret_in_production() -> None:
    config.reset()
    with override_settings(IM_TASK={"ENVIRONMENT": "production"}):
        assert "im_task.E004" in check_ids()
    with override_settings(IM_TASK={"ENVIRONMENT": "production", "SECRET": "a-production-secret-value-0123456789"}):
        assert "im_task.E004" not in check_ids()


def test_w003_deploy_check_without_secret() -> None:
    config.reset()
    with override_settings(IM_TASK={}):
        assert "im_task.W003" in check_ids(include_deployment_checks=True)
        assert "im_task.W003" not in check_ids()


def test_e005_unknown_transport() -> None:
    """E005 gives the runtime's own message (im_task.transports.factory.load_transport_setting)."""
    for transport, words in (
        ("rabbit", "neither a built-in name nor of the form"),
        ("no_such_module_anywhere:make", "cannot be imported"),
        ("im_task.transports:NoSuchFactory", "does not define"),
        ("im_task.names:QUEUE_FILE", "not a Transport or a factory"),
    ):
        with override_settings(IM_TASK={"TRANSPORT": transport}):
            [message] = [m for m in run_checks() if m.id == "im_task.E005"]
            assert words in message.msg, transport
            with pytest.raises(ConfigurationError) as raised:
                runtime.get_transport()
            assert str(raised.value) == message.msg  # the runtime refuses it with the same words
    for transport in ("recording", "im_task.transports:RecordingTransport"):
        with override_settings(IM_TASK={"TRANSPORT": transport}):
            assert "im_task.E005" not in check_ids(), transport


def test_e006_route_not_mounted() -> None:
    with override_settings(ROOT_URLCONF="django_testproject.urls_without_tasks"):
        assert "im_task.E006" in check_ids()
    with override_settings(ROOT_URLCONF="django_testproject.urls_prefixed"):
        assert "im_task.E006" in check_ids()  # the prefix moves the endpoint away from the task URLs
    with override_settings(ROOT_URLCONF="django_testproject.urls_direct"):
        assert "im_task.E006" not in check_ids()
    assert "im_task.E006" not in check_ids()


def test_e007_unknown_database() -> None:
    with override_settings(IM_TASK={"DATABASE": "replica"}):
        assert "im_task.E007" in check_ids()
    with override_settings(IM_TASK={"DATABASE": "other"}):
        assert "im_task.E007" not in check_ids()


def _w001_messages() -> list[str]:
    return [message.msg for message in run_checks() if message.id == "im_task.W001"]


def test_w001_localhost_not_allowed_by_the_settings_transport() -> None:
    """Before a transport is made, W001 follows the settings: the default is the local queue."""
    with override_settings(ALLOWED_HOSTS=["example.com"]):
        assert "im_task.W001" not in check_ids()  # in-process deliveries then use Host: example.com
    with override_settings(ALLOWED_HOSTS=[]):
        assert "im_task.W001" in check_ids()
        with override_settings(DEBUG=True):
            assert "im_task.W001" not in check_ids()
        with override_settings(IM_TASK={"TRANSPORT": "recording"}):
            assert "im_task.W001" not in check_ids()
        with override_settings(IM_TASK={"REGISTER_LOCAL_TARGET": False}):
            assert "im_task.W001" not in check_ids()
    assert "im_task.W001" not in check_ids()  # the test project allows localhost


def test_w001_follows_the_transport_in_use(tmp_path: Path) -> None:
    """As under a test runner: the settings name no transport, but another one is in use."""
    with override_settings(ALLOWED_HOSTS=[]):
        configure(transport=RecordingTransport())
        assert isinstance(runtime.get_transport(), RecordingTransport)
        assert "im_task.W001" not in check_ids()
        with LocalTransport(tmp_path / "http.sqlite3", target="http://127.0.0.1:9", autostart=False) as over_http:
            configure(transport=over_http)
            assert runtime.get_transport() is over_http
            assert "im_task.W001" not in check_ids()  # it delivers over HTTP, to the Host of its target
        with LocalTransport(tmp_path / "here.sqlite3", autostart=False) as in_process:
            configure(transport=in_process)
            assert "im_task.W001" in check_ids()  # an instance in the settings, not made into the transport yet
            assert runtime.get_transport() is in_process
            [message] = _w001_messages()
            assert "ALLOWED_HOSTS is empty" in message
            local_target.register_local_target(None)  # nothing to deliver to in process
            assert "im_task.W001" not in check_ids()


def test_e008_top_level_settings_are_flagged() -> None:
    with override_settings(IM_TASK_SECRET="a-long-enough-secret", IM_TASK_ENV="production", IM_TASK_ROUTE="/t"):
        messages = [m for m in run_checks() if m.id == "im_task.E008"]
        assert [m.msg.split(" ")[0] for m in messages] == [
            "settings.IM_TASK_ENV",
            "settings.IM_TASK_ROUTE",
            "settings.IM_TASK_SECRET",
        ]
        assert "settings.IM_TASK_SECRET is not read by im-task" in messages[2].msg
        assert [m.hint for m in messages] == [
            'Move it into IM_TASK = {"ENVIRONMENT": ...}.',
            'Move it into IM_TASK = {"ROUTE": ...}.',
            'Move it into IM_TASK = {"SECRET": ...}.',
        ]
    with override_settings(IM_TASK_SECRTE="x"):
        [message] = [m for m in run_checks() if m.id == "im_task.E008"]
        assert message.hint is not None
        assert "did you mean 'SECRET'?" in message.hint
        assert "rename it" in message.hint
    assert "im_task.E008" not in check_ids()


def test_w004_unknown_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IM_TASK_SECRTE", "typo")
    monkeypatch.setenv("IM_TASK_DEFAULT_QUEUE", "known")
    [message] = [m for m in run_checks() if m.id == "im_task.W004"]
    assert message.msg.startswith("$IM_TASK_SECRTE is not an im-task setting (did you mean 'IM_TASK_SECRET'?)")
    monkeypatch.delenv("IM_TASK_SECRTE")
    assert "im_task.W004" not in check_ids()


def test_w002_ssl_redirect() -> None:
    with override_settings(SECURE_SSL_REDIRECT=True):
        assert "im_task.W002" in check_ids()
        with override_settings(SECURE_REDIRECT_EXEMPT=[r"^_ah/task/"]):
            assert "im_task.W002" in check_ids()  # the other endpoints (/_ah/queue/deferred...) still redirect
        with override_settings(SECURE_REDIRECT_EXEMPT=[r"^_ah/"]):
            assert "im_task.W002" not in check_ids()


def test_w006_sweep_outside_the_queues_name_memory(tmp_path: Path) -> None:
    assert "im_task.W006" not in check_ids()  # the default local queue: 30 + 60 s, well inside its hour
    with override_settings(IM_TASK={"SWEEP_INTERVAL": 3600}):
        [message] = [m for m in run_checks() if m.id == "im_task.W006"]
        assert "CLAIM_SECONDS 30 + SWEEP_OLDER_THAN 60 + SWEEP_INTERVAL 3600" in message.msg
        assert "3600 s" in message.msg
    with LocalTransport(tmp_path / "queue.sqlite3", autostart=False, name_retention=100) as queue:
        configure(transport=queue)
        assert "im_task.W006" in check_ids()  # 90 s is over half of 100 s
        with override_settings(IM_TASK={"SWEEP_OLDER_THAN": 10, "CLAIM_SECONDS": 5, "SWEEP_INTERVAL": 30}):
            assert "im_task.W006" not in check_ids()
    configure(transport=RecordingTransport())  # remembers nothing it could be compared with
    with override_settings(IM_TASK={"SWEEP_INTERVAL": 86400}):
        assert "im_task.W006" not in check_ids()


@pytest.mark.parametrize("key", ["CLAIM_SECONDS", "SWEEP_INTERVAL"])
@pytest.mark.parametrize("value", [0, -1, "60", True])
def test_e003_outbox_seconds(key: str, value: object) -> None:
    with override_settings(IM_TASK={key: value}):
        [message] = [m for m in run_checks() if m.id == "im_task.E003"]
        assert f"IM_TASK['{key}'] must be a number of seconds > 0" in message.msg
