"""``setup(app)``: ``app.config["im_task"]`` into the core, the local queue's target, start-up checks."""

from __future__ import annotations

import logging

import pytest
import webapp2
from webob import Request

import im_task.config
import webapp2_sink
from im_task import ConfigurationError, configure, task
from im_task.config import get_local_target, get_settings
from im_task.headers import make_task_headers
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


def test_setup_lets_patch_reach_the_task_route() -> None:
    app = make_app()
    assert "PATCH" not in app.allowed_methods  # webapp2 would answer 501 Not Implemented
    setup(app)
    reply = Request.blank("/_ah/task/m/f", method="PATCH").get_response(app)
    assert reply.status_int == 405
    assert reply.headers["Allow"] == "POST"


def test_the_settings_apply_to_requests() -> None:
    app = setup(make_app(im_task={"max_body_size": 4096}))
    transport = im_task.config.get_transport()
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
        (make_app(im_task=["secret"]), r'app.config\["im_task"\] must be a dict'),
        (make_app(im_task={"taskroute": "/t"}), r"app.config\[\"im_task\"\]: unknown setting\(s\) 'taskroute'"),
        (make_app(im_task={"max_body_size": 10}), "max_body_size must be a whole number of bytes >= 1024"),
    ],
    ids=["not-an-app", "not-a-dict", "unknown-setting", "bad-value"],
)
def test_setup_refuses_bad_apps_and_settings(app: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        setup(app)
    assert not is_set_up(app)


def test_setup_refuses_production_without_a_secret() -> None:
    im_task.config.reset()
    app = make_app(im_task={"environment": "production", "transport": "recording"})
    with pytest.raises(ConfigurationError, match="No secret is configured and this is production"):
        setup(app)
    assert not is_set_up(app)
    assert get_local_target() is None  # not left registered


def test_a_secret_in_app_config_is_enough_for_production() -> None:
    im_task.config.reset()
    setup(make_app(im_task={"environment": "production", "transport": "recording", "secret": "s" * 32}))
    assert get_settings().secrets == (b"s" * 32,)


def test_serving_tasks_without_setup_warns_once_that_app_config_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(im_task={"max_body_size": 4096})
    for _ in range(2):
        Request.blank("/_ah/task/m/f", method="POST").get_response(app)
    warnings = [r for r in caplog.records if r.name == "im_task.webapp2"]
    assert len(warnings) == 1
    assert 'app.config["im_task"] is ignored: call im_task_webapp2.setup(app)' in warnings[0].getMessage()
    assert app.registry[CONFIG_KEY] is False
    assert not is_set_up(app)


def test_serving_tasks_without_setup_or_app_config_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="im_task.webapp2")
    app = make_app()
    Request.blank("/_ah/task/m/f", method="POST").get_response(app)
    assert [r for r in caplog.records if r.name == "im_task.webapp2"] == []
