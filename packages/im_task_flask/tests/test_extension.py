"""``ImTask`` / ``init_app``: configuration keys, routes, local target, start-up checks, CSRF, the old entry point."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask
from im_task_testsupport import sink as flask_sink

from flask_helpers import Client
from im_task import ConfigurationError, configure, get_taskroute, set_taskroute, task
from im_task.config import get_settings
from im_task.headers import make_task_headers
from im_task.local_target import get_local_target
from im_task.runtime import get_transport
from im_task.testing import serve_wsgi
from im_task.transports import RecordingTransport, TaskRequest
from im_task_flask import CONFIG_KEYS, ImTask, ImTaskState, make_blueprint, setuptasksforflask

ALL_KEYS = list(CONFIG_KEYS)


def make_task(tag: str) -> Any:
    @task
    def record() -> None:
        flask_sink.record(tag)

    return record


def deliver(client: Client, request: TaskRequest, path: str | None = None) -> int:
    headers = {**request.headers, **make_task_headers(queue_name=request.queue, task_name=request.name or "t")}
    return client.request("POST", path or request.url, request.body, headers).status


def only_request(recorder: RecordingTransport) -> TaskRequest:
    (request,) = recorder.requests
    recorder.clear()
    return request


# -- configuration keys -------------------------------------------------------


def test_the_config_keys_are_the_cores_names_spelt_for_flask() -> None:
    assert dict(CONFIG_KEYS) == {
        "IM_TASK_TRANSPORT": "transport",
        "IM_TASK_SECRET": "secret",
        "IM_TASK_DATA_DIR": "data_dir",
        "IM_TASK_MAX_BODY_SIZE": "max_body_size",
        "IM_TASK_WARMUP_MODULE": "warmup_module",
        "IM_TASK_DEFAULT_QUEUE": "default_queue",
        "IM_TASK_ENV": "environment",
        "IM_TASK_PROJECT": "project",
        "IM_TASK_LOCATION": "location",
        "IM_TASK_BASE_URL": "base_url",
        "IM_TASK_SERVICE_ACCOUNT_EMAIL": "service_account_email",
        "IM_TASK_AUDIENCE": "audience",
        "IM_TASK_BACKGROUND_SERVICE": "background_service",
        "IM_TASK_FRONT_AUTHENTICATED": "front_authenticated",
        "IM_TASK_ACCEPT_LEGACY_PAYLOADS": "accept_legacy_payloads",
        "IM_TASK_PAYLOAD_STORE": "payload_store",
        "IM_TASK_DEAD_LETTER_STORE": "dead_letter_store",
        "IM_TASK_LOG_OUTCOMES": "log_outcomes",
        "IM_TASK_ENVELOPE_LIFETIME": "envelope_lifetime",
        "IM_TASK_ACCEPT_UNBOUND_ENVELOPES": "accept_unbound_envelopes",
        "IM_TASK_ROUTE": "route",
        "IM_TASK_REGISTER_LOCAL_TARGET": "register_local_target",
    }


def test_every_config_key_gets_a_default_and_is_documented(recorder: RecordingTransport) -> None:
    app = Flask("defaults")
    ImTask(app)
    assert {key: app.config[key] for key in ALL_KEYS} == {
        **dict.fromkeys(ALL_KEYS, None),
        "IM_TASK_REGISTER_LOCAL_TARGET": True,
    }
    assert set(ALL_KEYS) >= {
        "IM_TASK_SECRET",
        "IM_TASK_TRANSPORT",
        "IM_TASK_ROUTE",
        "IM_TASK_DATA_DIR",
        "IM_TASK_MAX_BODY_SIZE",
        "IM_TASK_WARMUP_MODULE",
        "IM_TASK_DEFAULT_QUEUE",
        "IM_TASK_ENV",
    }
    for key in ALL_KEYS:
        assert f"``{key}``" in (ImTask.__doc__ or "")


def test_config_keys_reach_the_core(tmp_path: Path) -> None:
    configure(secret=None, data_dir=None)  # let app.config provide them
    app = Flask("configured")
    app.config.update(
        IM_TASK_SECRET="an-app-config-secret-0123456789abc",
        IM_TASK_TRANSPORT="recording",
        IM_TASK_DATA_DIR=str(tmp_path / "data"),
        IM_TASK_MAX_BODY_SIZE=4096,
        IM_TASK_WARMUP_MODULE="flask_warmup",
        IM_TASK_DEFAULT_QUEUE="background",
        IM_TASK_ENV="production",
        IM_TASK_SERVICE_ACCOUNT_EMAIL="tasks@my-project.iam.gserviceaccount.com",
        IM_TASK_AUDIENCE="https://app.example.com",
    )
    state = ImTask().init_app(app)
    settings = get_settings()
    assert settings.secrets == (b"an-app-config-secret-0123456789abc",)
    assert isinstance(get_transport(), RecordingTransport)
    assert settings.data_dir == tmp_path / "data"
    assert settings.max_body_size == 4096
    assert settings.warmup_module == "flask_warmup"
    assert settings.default_queue == "background"
    assert settings.production
    assert state.settings["default_queue"] == "background"
    assert app.extensions["im_task"] is state


def test_unset_keys_are_not_pushed(recorder: RecordingTransport) -> None:
    app = Flask("sparse")
    app.config["IM_TASK_DEFAULT_QUEUE"] = "mail"
    state = ImTask().init_app(app)
    assert dict(state.settings) == {"default_queue": "mail"}


def test_configure_wins_over_app_config(recorder: RecordingTransport) -> None:
    configure(default_queue="from-configure")
    app = Flask("both")
    app.config["IM_TASK_DEFAULT_QUEUE"] = "from-app-config"
    ImTask(app)
    assert get_settings().default_queue == "from-configure"


def test_a_bad_config_value_is_refused_at_init_app_naming_its_source(recorder: RecordingTransport) -> None:
    app = Flask("bad")
    app.config["IM_TASK_MAX_BODY_SIZE"] = "big"
    with pytest.raises(ConfigurationError, match=r"app\.config.*max_body_size"):
        ImTask(app)
    assert "im_task" not in app.extensions


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("IM_TASK_SECRTE", r"unknown key 'IM_TASK_SECRTE' \(did you mean 'IM_TASK_SECRET'\?\); known keys: IM_TASK_"),
        ("IM_TASK_ENVIRONMENT", r"unknown key 'IM_TASK_ENVIRONMENT' \(did you mean 'IM_TASK_ENV'\?\)"),
        ("IM_TASK_TASKROUTE", r"unknown key 'IM_TASK_TASKROUTE' \(did you mean 'IM_TASK_ROUTE'\?\)"),
        (
            "IM_TASK_ZZZZZZZZZZZZZZZZ",
            r"unknown key 'IM_TASK_ZZZZZZZZZZZZZZZZ'; known keys: IM_TASK_TRANSPORT, IM_TASK_SECRET",
        ),
        ("IM_TASK_Secret", r"'IM_TASK_Secret' must be written 'IM_TASK_SECRET'"),
        ("im_task_route", r"'im_task_route' must be written 'IM_TASK_ROUTE'"),
    ],
    ids=["typo", "long-name-of-env", "typo-of-an-adapter-key", "far-from-any", "case-only", "lower-case"],
)
def test_an_unknown_im_task_key_is_refused_with_the_closest_known_one(
    recorder: RecordingTransport, key: str, message: str
) -> None:
    app = Flask("typo")
    app.config[key] = "/jobs" if "ROUTE" in key.upper() else "a-secret-in-a-misspelt-key"
    with pytest.raises(ConfigurationError, match=r"Flask app 'typo': app\.config: " + message):
        ImTask(app)
    assert "im_task" not in app.extensions
    assert get_local_target() is None
    assert get_taskroute() == "/_ah/task"


def test_an_unknown_key_is_refused_even_when_it_is_none(recorder: RecordingTransport) -> None:
    app = Flask("typo-none")
    app.config["IM_TASK_SECRTE"] = None
    with pytest.raises(ConfigurationError, match="did you mean 'IM_TASK_SECRET'"):
        ImTask(app)


def test_keys_of_other_extensions_are_left_alone(recorder: RecordingTransport) -> None:
    app = Flask("others")
    app.config.update(IM_TASKS="another library's", IMTASK_SECRET="not ours", SECRET_KEY="flask's own")
    ImTask(app)
    assert "im_task" in app.extensions


def test_a_bad_register_local_target_is_refused(recorder: RecordingTransport) -> None:
    app = Flask("bad-register")
    app.config["IM_TASK_REGISTER_LOCAL_TARGET"] = "yes"
    with pytest.raises(
        ConfigurationError, match=r"app\.config\['IM_TASK_REGISTER_LOCAL_TARGET'\] must be True or False"
    ):
        ImTask(app)
    assert get_local_target() is None


def test_unknown_im_task_environment_variables_are_logged_at_init_app(
    recorder: RecordingTransport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("IM_TASK_SECRTE", "a-misspelt-secret")
    monkeypatch.setenv("IM_TASK_ZZZZZZZZZZZZZZZZ", "far from any name")
    monkeypatch.setenv("IM_TASK_DEFAULT_QUEUE", "known")
    caplog.set_level(logging.WARNING, logger="im_task")
    ImTask(Flask("environment"))
    lines = [r.getMessage() for r in caplog.records if r.name == "im_task" and r.levelno == logging.WARNING]
    assert lines == [
        "$IM_TASK_SECRTE is not an im-task setting (did you mean 'IM_TASK_SECRET'?); it is ignored.",
        "$IM_TASK_ZZZZZZZZZZZZZZZZ is not an im-task setting; it is ignored.",
    ]


def test_the_warmup_module_is_imported_before_the_first_task(recorder: RecordingTransport) -> None:
    sys.modules.pop("flask_warmup", None)
    app = Flask("warm")
    app.config["IM_TASK_WARMUP_MODULE"] = "flask_warmup"
    ImTask(app)
    make_task("after warm-up")()
    request = only_request(recorder)
    with serve_wsgi(app) as url:
        assert deliver(Client(url), request) == 200
    assert flask_sink.calls == ["warmed up", "after warm-up"]


# -- start-up checks ------------------------------------------------------------


def test_production_without_a_secret_is_refused_at_init_app(recorder: RecordingTransport) -> None:
    configure(secret=None)
    app = Flask("unsafe")
    app.config["IM_TASK_ENV"] = "production"
    with pytest.raises(ConfigurationError, match="No secret is configured and this is production"):
        ImTask(app)
    assert "im_task" not in app.extensions
    assert get_local_target() is None


def test_production_with_a_secret_in_app_config_starts(recorder: RecordingTransport) -> None:
    configure(secret=None)
    app = Flask("safe")
    app.config.update(
        IM_TASK_ENV="production", IM_TASK_SECRET="a-production-secret-0123456789ab", IM_TASK_FRONT_AUTHENTICATED=True
    )
    ImTask(app)
    assert "im_task" in app.extensions


def test_init_app_twice_on_one_app_is_refused(recorder: RecordingTransport) -> None:
    app = Flask("twice")
    extension = ImTask(app)
    with pytest.raises(ConfigurationError, match="already set up"):
        extension.init_app(app)


def test_init_app_needs_a_flask_app(recorder: RecordingTransport) -> None:
    with pytest.raises(ConfigurationError, match="needs a Flask application"):
        ImTask().init_app(object())  # type: ignore[arg-type]


# -- several apps -----------------------------------------------------------------


def test_one_extension_sets_up_two_apps(recorder: RecordingTransport) -> None:
    extension = ImTask()
    first, second = Flask("first"), Flask("second")
    first_state = extension.init_app(first)
    second_state = extension.init_app(second)
    assert first.extensions["im_task"] is first_state
    assert second.extensions["im_task"] is second_state
    assert first_state.extension is second_state.extension is extension
    assert not hasattr(extension, "app")
    make_task("two apps")()
    request = only_request(recorder)
    with serve_wsgi(first) as one, serve_wsgi(second) as two:
        assert deliver(Client(one), request) == 200
        assert deliver(Client(two), request) == 200
    assert flask_sink.calls == ["two apps", "two apps"]
    assert get_local_target() is second  # the last app set up is the local queue's target


def test_the_local_target_registration_can_be_turned_off(recorder: RecordingTransport) -> None:
    app = Flask("no-target")
    app.config["IM_TASK_REGISTER_LOCAL_TARGET"] = False
    state = ImTask().init_app(app)
    assert get_local_target() is None
    assert not state.local_target


# -- routes ---------------------------------------------------------------------------


def test_im_task_route_changes_the_route(recorder: RecordingTransport) -> None:
    app = Flask("routed")
    app.config["IM_TASK_ROUTE"] = "/Tasks/Run/"
    state = ImTask().init_app(app)
    assert get_taskroute() == state.route == "/Tasks/Run"
    make_task("routed")()
    request = only_request(recorder)
    assert request.url.startswith("/Tasks/Run/")
    with serve_wsgi(app) as url:
        client = Client(url)
        assert deliver(client, request, path=request.url.replace("/Tasks/Run", "/_ah/task")) == 404
        assert deliver(client, request) == 200
    assert flask_sink.calls == ["routed"]


def test_set_taskroute_before_setup_is_followed(recorder: RecordingTransport) -> None:
    set_taskroute("/jobs")
    app = Flask("jobs")
    assert ImTask().init_app(app).route == "/jobs"
    make_task("jobs")()
    request = only_request(recorder)
    with serve_wsgi(app) as url:
        assert deliver(Client(url), request) == 200
    assert request.url.startswith("/jobs/")


def test_a_bad_route_is_refused(recorder: RecordingTransport) -> None:
    app = Flask("bad-route")
    app.config["IM_TASK_ROUTE"] = "not a route"
    with pytest.raises(ConfigurationError, match="absolute path"):
        ImTask(app)


def test_make_blueprint_mounts_the_endpoint_anywhere(recorder: RecordingTransport) -> None:
    blueprint = make_blueprint("/queue/work/")
    assert isinstance(blueprint, Blueprint)
    app = Flask("manual")
    app.register_blueprint(blueprint, url_prefix="/api")
    make_task("manual").using(url="/api/queue/work/any/thing")()
    request = only_request(recorder)
    with serve_wsgi(app) as url:
        client = Client(url)
        assert deliver(client, request) == 200
        reply = client.request("PROPFIND", "/api/queue/work/any/thing")
        assert (reply.status, reply.headers["Allow"]) == (405, "POST")
    assert flask_sink.calls == ["manual"]


@pytest.mark.parametrize("route", ["", "/", "/a b", "/x/<int:y>", 5])
def test_make_blueprint_refuses_bad_routes(route: Any) -> None:
    with pytest.raises(ConfigurationError, match="task route must be"):
        make_blueprint(route)


# -- the old entry point -------------------------------------------------------------------


def test_setuptasksforflask_serves_tasks(recorder: RecordingTransport) -> None:
    set_taskroute("/legacy")
    app = Flask("legacy")
    state = setuptasksforflask(app)
    assert isinstance(state, ImTaskState)
    assert state.route == "/legacy"
    make_task("legacy")()
    request = only_request(recorder)
    with serve_wsgi(app) as url:
        assert deliver(Client(url), request) == 200
    assert flask_sink.calls == ["legacy"]


# -- CSRF --------------------------------------------------------------------------------------


@pytest.mark.parametrize("csrf_first", [True, False], ids=["csrf-before", "csrf-after"])
def test_the_task_blueprint_is_exempt_from_flask_wtf_csrf(recorder: RecordingTransport, csrf_first: bool) -> None:
    flask_wtf = pytest.importorskip("flask_wtf")
    app = Flask("csrf")
    app.config["SECRET_KEY"] = "a-flask-secret-key"

    @app.post("/form")
    def form() -> str:
        return "accepted"

    csrf = flask_wtf.CSRFProtect()
    if csrf_first:
        csrf.init_app(app)
        assert ImTask().init_app(app).csrf_exempt
    else:
        ImTask(app)
        csrf.init_app(app)
    make_task("csrf")()
    request = only_request(recorder)
    with serve_wsgi(app) as url:
        client = Client(url)
        assert client.request("POST", "/form", b"").status == 400  # CSRF protection is on
        assert deliver(client, request) == 200
    assert flask_sink.calls == ["csrf"]
