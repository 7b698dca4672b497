"""``routes()`` gives a route per endpoint of the core's endpoint table: a new endpoint needs no change here."""

from __future__ import annotations

import pytest
import webapp2
from im_task_testsupport import sink as webapp2_sink
from im_task_testsupport.endpoints import PROBE, TREE, add_endpoints
from webob import Request

import im_task.endpoints
from im_task import task
from im_task.endpoints import TASK_ENDPOINT
from im_task.headers import make_task_headers
from im_task.runtime import get_transport
from im_task.transports import RecordingTransport
from im_task_webapp2 import ROUTE_NAME, TaskHandler, TaskRoute, routes, setup


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core's endpoint table with an exact endpoint and a prefix endpoint added."""
    add_endpoints(monkeypatch)


class Home(webapp2.RequestHandler):
    def get(self) -> None:
        self.response.write("home")


def test_today_routes_serve_the_task_endpoint_first_and_the_deferred_endpoints() -> None:
    route, *others = routes()
    assert isinstance(route, TaskRoute)
    assert route.endpoint is TASK_ENDPOINT
    assert route.name == ROUTE_NAME
    assert {"/_ah/queue/deferred", "/_ah/queue/<path:.+>"} <= {other.template for other in others}


@pytest.mark.usefixtures("table")
def test_there_is_one_route_per_endpoint_in_the_tables_order() -> None:
    made = routes()
    assert [(r.template, r.name, r.endpoint) for r in made] == [
        ("/_ah/task/<path:.+>", "im_task", TASK_ENDPOINT),
        ("/_ah/probe", "im_task.probe", PROBE),
        ("/_ah/tree/<path:.+>", "im_task.tree", TREE),
    ]
    assert all(r.handler is TaskHandler and r.handler_method == "post" and r.methods is None for r in made)
    app = webapp2.WSGIApplication(made)
    assert app.router.build(webapp2.Request.blank("/"), "im_task.probe", (), {}) == "/_ah/probe"


@pytest.mark.usefixtures("table")
def test_a_fixed_route_moves_the_task_endpoint_only() -> None:
    assert [r.template for r in routes("/jobs")] == ["/jobs/<path:.+>", "/_ah/probe", "/_ah/tree/<path:.+>"]


@pytest.mark.usefixtures("table")
def test_each_route_reaches_its_own_endpoint() -> None:
    app = setup(webapp2.WSGIApplication([*routes(), ("/", Home)]))

    @task
    def record() -> None:
        webapp2_sink.record("task")

    record()
    transport = get_transport()
    assert isinstance(transport, RecordingTransport)
    [sent] = transport.requests
    assert Request.blank("/_ah/probe", method="POST", body=b"hello").get_response(app).body == (
        b"echo POST /_ah/probe hello\n"
    )
    assert Request.blank("/_ah/tree/a/b", method="PUT", body=b"deep").get_response(app).body == (
        b"echo PUT /_ah/tree/a/b deep\n"
    )
    assert Request.blank("/_ah/probe/under", method="POST").get_response(app).status_int == 404
    headers = {**sent.headers, **make_task_headers(queue_name=sent.queue, task_name="t")}
    task_reply = Request.blank(sent.url, method="POST", body=sent.body, headers=headers).get_response(app)
    assert task_reply.status_int == 200
    assert Request.blank("/").get_response(app).body == b"home"
    assert webapp2_sink.calls == ["task"]


@pytest.mark.usefixtures("table")
@pytest.mark.parametrize("method", ["GET", "PROPFIND", "FROBNICATE"])
def test_setup_opens_every_endpoints_route_to_every_method(method: str) -> None:
    app = setup(webapp2.WSGIApplication(routes()))
    reply = Request.blank("/_ah/probe", method=method).get_response(app)
    assert (reply.status_int, reply.body) == (200, f"echo {method} /_ah/probe \n".encode())


@pytest.mark.usefixtures("table")
def test_setups_route_check_looks_at_the_task_endpoint_only() -> None:
    app = setup(webapp2.WSGIApplication(routes("/jobs"), config={"im_task": {"route": "/jobs"}}))
    assert Request.blank("/_ah/probe", method="POST").get_response(app).status_int == 200


def test_the_handler_on_a_route_of_your_own_serves_the_endpoint_of_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(im_task.endpoints, "ENDPOINTS", [*im_task.endpoints.ENDPOINTS, PROBE])
    app = setup(webapp2.WSGIApplication([webapp2.Route("/_ah/<:.*>", TaskHandler, handler_method="post")]))
    assert Request.blank("/_ah/probe", method="POST", body=b"x").get_response(app).body == b"echo POST /_ah/probe x\n"
    assert Request.blank("/_ah/task/m/f", method="POST").get_response(app).status_int == 403  # the task endpoint's
