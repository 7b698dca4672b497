"""``setup(app)``: ``app.config["im_task"]`` into the core, the local queue's target, start-up checks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import webapp2
from im_task_testsupport import sink as webapp2_sink
from webob import Request

import im_task.config
import im_task.runtime
from im_task import ConfigurationError, configure, get_taskroute, task
from im_task.config import get_settings
from im_task.headers import make_task_headers
from im_task.local_target import get_local_target, register_local_target
from im_task.transports import RecordingTransport
from im_task_webapp2 import CONFIG_KEY, is_set_up, routes, setup


@task
def remember(value: object) -> None:
    webapp2_sink.record(value)


def make_app(**config: object) -> webapp2.WSGIApplication:
    return webapp2.WSGIApplication(routes(), config=config)


def test_setup_reads_app_config_into_the_core_and_returns_the_app() -> None:
    app = make_app(im_task={"max_body_size": 4096, "default_queue": "mail", "warmup_module": None})
    assert not is_set_up(app)
    assert setup(app) is app
    assert is_set_up(app)
    settings = get_settings()
    assert settings.max_body_size == 4096
    assert settings.default_queue == "mail"


def test_configure_wins_over_app_config() -> None:
    configure(max_body_size=2048)
    setup(make_app(im_task={"max_body_size": 4096}))
    assert get_settings().max_body_size == 2048


def test_an_app_without_im_task_config_gets_the_defaults() -> None:
    setup(make_app())
    assert get_settings().max_body_size == 1024 * 1024


def test_setup_registers_the_app_as_the_local_queue_target() -> None:
    app = setup(make_app())
    assert get_local_target() is app


@pytest.mark.parametrize("method", ["PATCH", "PROPFIND", "CONNECT", "FROBNICATE"])
def test_setup_opens_the_task_route_to_every_method(method: str) -> None:
    app = make_app()
    before = Request.blank("/_ah/task/m/f", method=method).get_response(app)
    assert before.status_int == 501  # webapp2 refuses a method it does not list, before routing
    setup(app)
    reply = Request.blank("/_ah/task/m/f", method=method).get_response(app)
    assert reply.status_int == 405
    assert reply.headers["Allow"] == "POST"


class Home(webapp2.RequestHandler):
    def get(self) -> None:
        self.response.write("home")

    def frobnicate(self) -> None:  # a helper webapp2 would call for a FROBNICATE request, if it let one through
        webapp2_sink.record("frobnicate")


def test_setup_leaves_the_other_routes_as_webapp2_answers_them() -> None:
    app = setup(webapp2.WSGIApplication([*routes(), ("/", Home)]))
    assert Request.blank("/").get_response(app).body == b"home"
    for method in ("FROBNICATE", "PATCH"):
        assert Request.blank("/", method=method).get_response(app).status_int == 501
    refused = Request.blank("/", method="PUT").get_response(app)
    assert (refused.status_int, refused.headers["Allow"]) == (405, "GET")
    assert webapp2_sink.calls == []


def test_the_allowed_methods_are_webapp2s_outside_a_task_request() -> None:
    app = make_app()
    listed = frozenset(app.allowed_methods)
    setup(app)
    assert set(app.allowed_methods) == listed
    assert "GET" in app.allowed_methods
    assert "FROBNICATE" not in app.allowed_methods  # not inside a request


def test_app_config_route_sets_the_task_route_served_by_routes_made_for_it() -> None:
    app = setup(webapp2.WSGIApplication(routes("/jobs"), config={"im_task": {"route": "jobs/"}}))
    assert get_taskroute() == "/jobs"

    @task
    def later() -> None:
        webapp2_sink.record("later")

    assert later.url.startswith("/jobs/")
    assert Request.blank(later.url, method="GET").get_response(app).status_int == 405  # served here


def test_app_config_route_without_task_routes_only_sets_the_route() -> None:
    setup(webapp2.WSGIApplication([("/", Home)], config={"im_task": {"route": "/jobs"}}))
    assert get_taskroute() == "/jobs"


@pytest.mark.parametrize(
    ("app_routes", "config", "message"),
    [
        (
            routes,
            {"route": "/jobs"},
            r"app.config\['im_task'\]\['route'\] sends tasks to /jobs, but this app serves them at /_ah/task "
            r".*make the routes with routes\('/jobs'\)",
        ),
        (
            lambda: routes("/jobs"),
            {},
            r"Tasks are sent to /_ah/task, but this app serves them at /jobs: call im_task.set_taskroute\('/jobs'\)",
        ),
        (lambda: routes("/jobs"), {"route": "/jobs", "max_body_size": 10}, "max_body_size must be"),
    ],
    ids=["config-route-but-default-routes", "routes-elsewhere", "refused-with-a-route"],
)
def test_setup_refuses_task_routes_elsewhere_and_leaves_the_core_as_it_was(
    app_routes: Callable[[], list[Any]], config: dict[str, Any], message: str
) -> None:
    app = webapp2.WSGIApplication(app_routes(), config={"im_task": config})
    with pytest.raises(ConfigurationError, match=message):
        setup(app)
    assert get_taskroute() == "/_ah/task"
    assert get_local_target() is None
    assert get_settings().max_body_size == 1024 * 1024
    assert not is_set_up(app)
    assert Request.blank("/_ah/task/m/f", method="PATCH").get_response(app).status_int == 501  # not opened


def test_register_local_target_false_leaves_the_local_target_alone() -> None:
    other = make_app()
    register_local_target(other)
    setup(make_app(im_task={"register_local_target": False}))
    assert get_local_target() is other


def test_the_settings_apply_to_requests() -> None:
    app = setup(make_app(im_task={"max_body_size": 4096}))
    transport = im_task.runtime.get_transport()
    assert isinstance(transport, RecordingTransport)
    remember(b"x" * 5000)
    [sent] = transport.requests
    request = Request.blank(
        sent.url, method="POST", body=sent.body, headers=make_task_headers(queue_name="q", task_name="t")
    )
    assert request.get_response(app).status_int == 413
    assert webapp2_sink.calls == []


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (object(), "needs a webapp2.WSGIApplication, not object"),
        (make_app(im_task=["secret"]), r"app.config\['im_task'\] must be a dict"),
        (
            make_app(im_task={"taskroute": "/t"}),
            r"app.config\['im_task'\]: unknown key 'taskroute' \(did you mean 'route'\?\)",
        ),
        (make_app(im_task={"max_body_size": 10}), "max_body_size must be a whole number of bytes >= 1024"),
        (make_app(im_task={"route": "/a b"}), r"app.config\['im_task'\]\['route'\]: The task route must be"),
        (make_app(im_task={"route": 42}), r"\['route'\]: The task route must be a string"),
        (make_app(im_task={"register_local_target": "yes"}), r"\['register_local_target'\] must be True or False"),
    ],
    ids=["not-an-app", "not-a-dict", "unknown-setting", "bad-value", "bad-route", "route-not-str", "bad-register"],
)
def test_setup_refuses_bad_apps_and_settings(app: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        setup(app)
    assert not is_set_up(app)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("secrte", r"unknown key 'secrte' \(did you mean 'secret'\?\); known keys: transport, secret, "),
        ("max_body", r"unknown key 'max_body' \(did you mean 'max_body_size'\?\)"),
        ("register_target", r"unknown key 'register_target' \(did you mean 'register_local_target'\?\)"),
        ("SECRET", r"'SECRET' must be written 'secret'"),
        ("Route", r"'Route' must be written 'route'"),
    ],
    ids=["typo", "short", "adapter-key", "upper-case", "capitalised"],
)
def test_an_unknown_key_is_refused_with_the_closest_known_one(key: str, message: str) -> None:
    app = make_app(im_task={key: "/jobs" if key.lower() == "route" else "a-secret-in-a-misspelt-key"})
    with pytest.raises(ConfigurationError, match=r"^app\.config\['im_task'\]: " + message):
        setup(app)
    assert not is_set_up(app)
    assert get_local_target() is None
    assert get_taskroute() == "/_ah/task"


def test_unknown_im_task_environment_variables_are_logged_at_setup(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("IM_TASK_MAX_BODYSIZE", "4096")
    monkeypatch.setenv("IM_TASK_SECRET", "a-known-variable-0123456789abcdef")
    caplog.set_level(logging.WARNING, logger="im_task")
    setup(make_app())
    lines = [r.getMessage() for r in caplog.records if r.name == "im_task" and r.levelno == logging.WARNING]
    assert lines == [
        "$IM_TASK_MAX_BODYSIZE is not an im-task setting (did you mean 'IM_TASK_MAX_BODY_SIZE'?); it is ignored."
    ]


def test_setup_refuses_production_without_a_secret() -> None:
    im_task.config.reset()
    app = make_app(im_task={"environment": "production", "transport": "recording"})
    with pytest.raises(ConfigurationError, match="No secret is configured and this is production"):
        setup(app)
    assert not is_set_up(app)
    assert get_local_target() is None  # not left registered


def test_a_secret_in_app_config_is_enough_for_production() -> None:
    im_task.config.reset()
    production = {"environment": "production", "transport": "recording", "secret": "a-production-secret-0123456789ab"}
    setup(make_app(im_task={**production, "front_authenticated": True}))  # outside App Engine: a caller check too
    assert get_settings().secrets == (b"a-production-secret-0123456789ab",)


def test_serving_tasks_without_setup_warns_once_that_app_config_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(im_task={"max_body_size": 4096})
    for _ in range(2):
        Request.blank("/_ah/task/m/f", method="POST").get_response(app)
    warnings = [r for r in caplog.records if r.name == "im_task.webapp2"]
    assert len(warnings) == 1
    assert "app.config['im_task'] is ignored: call im_task_webapp2.setup(app)" in warnings[0].getMessage()
    assert app.registry[CONFIG_KEY] is False
    assert not is_set_up(app)


def test_serving_tasks_without_setup_or_app_config_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="im_task.webapp2")
    app = make_app()
    Request.blank("/_ah/task/m/f", method="POST").get_response(app)
    assert [r for r in caplog.records if r.name == "im_task.webapp2"] == []
