"""``make_blueprint`` mounts every endpoint of the core's endpoint table, so a new endpoint needs no Flask change."""

from __future__ import annotations

import pytest
from flask import Flask
from im_task_testsupport import sink as flask_sink
from im_task_testsupport.endpoints import add_endpoints

from flask_helpers import Client
from im_task import task
from im_task.endpoints import TASK_ENDPOINT, Endpoint
from im_task.headers import make_task_headers
from im_task.testing import serve_wsgi
from im_task.transports import RecordingTransport
from im_task_flask import ImTask, make_blueprint


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> list[Endpoint]:
    """The core's endpoint table with an exact endpoint and a prefix endpoint added."""
    return add_endpoints(monkeypatch)


def rules(app: Flask) -> dict[str, str]:
    return {rule.endpoint: rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("im_task.")}


def test_every_endpoint_of_the_table_is_a_rule_named_after_it(recorder: RecordingTransport, table: object) -> None:
    app = Flask("table")
    ImTask(app)
    assert rules(app) == {
        "im_task.task": "/_ah/task/<path:subpath>",
        "im_task.probe": "/_ah/probe",
        "im_task.tree": "/_ah/tree/<path:subpath>",
    }
    assert all(rule.methods is None for rule in app.url_map.iter_rules() if rule.endpoint.startswith("im_task."))


def test_today_the_blueprint_mounts_the_task_and_deferred_endpoints(recorder: RecordingTransport) -> None:
    app = Flask("today")
    ImTask(app)
    assert {
        f"im_task.{TASK_ENDPOINT.name}": "/_ah/task/<path:subpath>",
        "im_task.deferred": "/_ah/queue/deferred",
        "im_task.deferred_queue": "/_ah/queue/<path:subpath>",
    }.items() <= rules(app).items()


def test_each_rule_reaches_its_own_endpoint_over_http(recorder: RecordingTransport, table: object) -> None:
    app = Flask("served")
    ImTask(app)

    @task
    def record() -> None:
        flask_sink.record("task")

    record()
    (sent,) = recorder.requests
    headers = {**sent.headers, **make_task_headers(queue_name=sent.queue, task_name="t1")}
    with serve_wsgi(app) as url:
        client = Client(url)
        assert client.request("POST", "/_ah/probe", b"hello").body == b"echo POST /_ah/probe hello\n"
        assert client.request("PROPFIND", "/_ah/probe").body == b"echo PROPFIND /_ah/probe \n"
        assert client.request("POST", "/_ah/probe/under", b"x").status == 404  # exact: its path only
        assert client.request("PUT", "/_ah/tree/a/b", b"deep").body == b"echo PUT /_ah/tree/a/b deep\n"
        assert client.request("POST", sent.url, sent.body, headers).status == 200
    assert flask_sink.calls == ["task"]


def test_a_fixed_route_moves_the_task_endpoint_only(recorder: RecordingTransport, table: object) -> None:
    app = Flask("fixed")
    app.register_blueprint(make_blueprint("/jobs"), url_prefix="/api")
    assert rules(app) == {
        "im_task.task": "/api/jobs/<path:subpath>",
        "im_task.probe": "/api/_ah/probe",
        "im_task.tree": "/api/_ah/tree/<path:subpath>",
    }
    with serve_wsgi(app) as url:
        reply = Client(url).request("FROBNICATE", "/api/_ah/probe")
    assert (reply.status, reply.body) == (200, b"echo FROBNICATE /api/_ah/probe \n")


def test_an_added_endpoint_is_exempt_from_csrf(recorder: RecordingTransport, table: object) -> None:
    flask_wtf = pytest.importorskip("flask_wtf")
    app = Flask("csrf")
    app.config["SECRET_KEY"] = "a-flask-secret-key"
    flask_wtf.CSRFProtect(app)
    ImTask(app)
    with serve_wsgi(app) as url:
        reply = Client(url).request("POST", "/_ah/probe", b"no token")
    assert (reply.status, reply.body) == (200, b"echo POST /_ah/probe no token\n")
