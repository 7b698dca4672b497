"""``TaskWSGIApp`` over a real HTTP server: routing, fallback, and the request contract on the wire."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
from im_task_testsupport import sink
from im_task_testsupport.endpoints import PROBE, TREE, add_endpoints, echo
from im_task_testsupport.raw_http import Client

import im_task.endpoints
from im_task import ConfigurationError, configure, set_taskroute
from im_task.config import get_keyring
from im_task.endpoints import TASK_ENDPOINT
from im_task.envelope import seal
from im_task.executor import TaskResponse
from im_task.headers import make_task_headers
from im_task.serialization import TaskCall, dumps_call
from im_task.testing import serve_wsgi
from im_task.wsgi import TaskWSGIApp, environ_headers, handle_environ, send

TIMEOUT = 30


def work(label: str) -> None:
    sink.record(label)


def body_for(label: str) -> bytes:
    return seal(dumps_call(TaskCall(work, (label,))), get_keyring())


def task_headers() -> dict[str, str]:
    return {**make_task_headers(queue_name="default", task_name="t-1"), "Content-Type": "application/octet-stream"}


def fallback_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fallback saw " + environ["PATH_INFO"].encode()]


def request(
    base_url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Mapping[str, str], bytes]:
    reply = Client(base_url).request(method, path, body, headers)
    return reply.status, reply.headers, reply.body


@pytest.fixture
def server() -> Iterator[str]:
    with serve_wsgi(TaskWSGIApp()) as url:
        yield url


def test_a_task_runs_over_http(server: str) -> None:
    status, headers, body = request(server, "POST", "/_ah/task/app/work", body_for("over http"), task_headers())
    assert (status, body) == (200, b"OK\n")
    assert headers["Content-Length"] == "3"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert sink.calls == ["over http"]


def test_any_path_under_the_route_goes_to_the_executor(server: str) -> None:
    status, _, _ = request(server, "POST", "/_ah/task/any/thing/at/all", body_for("deep"), task_headers())
    assert status == 200
    assert sink.calls == ["deep"]


@pytest.mark.parametrize("path", ["/", "/_ah/task", "/_ah/taskx/y", "/_ah/other/x", "/_AH/TASK/x"])
def test_paths_outside_the_route_are_404(server: str, path: str) -> None:
    status, _, body = request(server, "POST", path, body_for("never"), task_headers())
    assert (status, body) == (404, b"Not Found\n")
    assert sink.calls == []


def test_contract_on_the_wire(server: str) -> None:
    path = "/_ah/task/app/work"
    assert request(server, "POST", path, body_for("x"), {"Content-Type": "application/octet-stream"})[0] == 403
    forged = bytearray(body_for("x"))
    forged[-2] ^= 1
    assert request(server, "POST", path, bytes(forged), task_headers())[0] == 403
    status, headers, _ = request(server, "GET", path)
    assert (status, headers["Allow"]) == (405, "POST")
    assert request(server, "PUT", path, body_for("x"), task_headers())[0] == 405
    assert sink.calls == []


def test_body_over_the_cap_is_413_over_http(server: str) -> None:
    configure(max_body_size=4096)
    status, _, body = request(server, "POST", "/_ah/task/app/work", body_for("x" * 10_000), task_headers())
    assert (status, body) == (413, b"Content Too Large.\n")
    assert sink.calls == []


def test_post_without_content_length_does_not_hang(server: str) -> None:
    """PEP 3333: without CONTENT_LENGTH there is no body to read; the app must not wait for the client to close."""
    parts = urlsplit(server)
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=15) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in task_headers().items())
        sock.sendall(f"POST /_ah/task/app/work HTTP/1.0\r\n{head}\r\n".encode())
        reply = sock.makefile("rb").readline()  # the socket stays open for writing: a reader would block
    assert reply.split()[1] == b"403"


def test_route_is_fixed_when_the_app_is_made() -> None:
    app = TaskWSGIApp()
    set_taskroute("/elsewhere")
    with serve_wsgi(app) as url:
        assert request(url, "POST", "/_ah/task/app/work", body_for("old route"), task_headers())[0] == 200
        assert request(url, "POST", "/elsewhere/app/work", body_for("new route"), task_headers())[0] == 404
    assert sink.calls == ["old route"]
    assert TaskWSGIApp().route == "/elsewhere"


def test_explicit_route_and_fallback() -> None:
    app = TaskWSGIApp(route="/Jobs/", fallback=fallback_app)
    assert app.route == "/Jobs"
    with serve_wsgi(app) as url:
        assert request(url, "POST", "/Jobs/app/work", body_for("job"), task_headers())[0] == 200
        status, _, body = request(url, "GET", "/home")
        assert (status, body) == (200, b"fallback saw /home")
        status, _, body = request(url, "POST", "/jobs/app/work", body_for("lower"), task_headers())
        assert (status, body) == (200, b"fallback saw /jobs/app/work")
    assert sink.calls == ["job"]


def test_script_name_counts_towards_the_path() -> None:
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.append(status)

    body = body_for("mounted")
    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "/_ah",
        "PATH_INFO": "/task/app/work",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in task_headers().items()},
    }
    assert b"".join(TaskWSGIApp()(environ, start_response)) == b"OK\n"
    assert seen == ["200 OK"]
    assert sink.calls == ["mounted"]


def test_input_terminated_streams_are_read_without_content_length() -> None:
    seen: list[str] = []
    body = body_for("terminated")
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/_ah/task/app/work",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in task_headers().items()},
    }
    TaskWSGIApp()(environ, lambda status, headers: seen.append(status))
    assert seen == ["200 OK"]
    assert sink.calls == ["terminated"]


def test_environ_headers() -> None:
    headers = environ_headers(
        {
            "HTTP_X_APPENGINE_QUEUENAME": "q",
            "HTTP_X_CLOUDTASKS_TASKNAME": "t",
            "CONTENT_TYPE": "application/octet-stream",
            "CONTENT_LENGTH": "12",
            "SERVER_NAME": "ignored",
            "wsgi.input": io.BytesIO(),
        }
    )
    assert headers["X-AppEngine-QueueName"] == "q"
    assert headers["x-cloudtasks-taskname"] == "t"
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["content-length"] == "12"
    assert len(headers) == 4
    assert len(environ_headers({"CONTENT_LENGTH": "", "CONTENT_TYPE": ""})) == 0


def test_send() -> None:
    captured: list[Any] = []
    response = TaskResponse(405, b"no\n", [("Allow", "POST")])
    assert send(response, lambda status, headers: captured.append((status, headers))) == [b"no\n"]
    assert captured == [("405 Method Not Allowed", [("Allow", "POST"), ("Content-Length", "3")])]


# -- the endpoint table ------------------------------------------------------------


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core's endpoint table with an exact endpoint and a prefix endpoint added."""
    add_endpoints(monkeypatch)


@pytest.mark.usefixtures("table")
def test_every_endpoint_of_the_table_is_served() -> None:
    app = TaskWSGIApp(fallback=fallback_app)
    assert app.endpoints == (TASK_ENDPOINT, PROBE, TREE)
    with serve_wsgi(app) as url:
        status, _, body = request(url, "POST", "/_ah/probe", b"hello")
        assert (status, body) == (200, b"echo POST /_ah/probe hello\n")
        assert request(url, "PROPFIND", "/_ah/probe")[2] == b"echo PROPFIND /_ah/probe \n"
        assert request(url, "PUT", "/_ah/tree/a/b", b"deep")[2] == b"echo PUT /_ah/tree/a/b deep\n"
        for beside in ("/_ah/probe/x", "/_ah/probex", "/_ah/tree"):
            assert request(url, "POST", beside)[2] == b"fallback saw " + beside.encode()
        assert request(url, "POST", "/_ah/task/app/work", body_for("task"), task_headers())[0] == 200
    assert sink.calls == ["task"]


def test_the_endpoints_are_those_of_the_table_when_the_app_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    app = TaskWSGIApp()
    monkeypatch.setattr(im_task.endpoints, "ENDPOINTS", [*im_task.endpoints.ENDPOINTS, PROBE])
    assert app.endpoint_for("/_ah/probe") is None
    assert TaskWSGIApp().endpoint_for("/_ah/probe") is PROBE


@pytest.mark.usefixtures("table")
def test_a_fixed_route_moves_the_task_endpoint_only() -> None:
    app = TaskWSGIApp("/jobs")
    assert app.endpoint_for("/jobs/m/f") is TASK_ENDPOINT
    assert app.endpoint_for("/_ah/task/m/f") is None
    assert app.endpoint_for("/_ah/probe") is PROBE


@pytest.mark.parametrize("route", ["", "/", "/a b"])
def test_a_bad_route_is_refused(route: str) -> None:
    with pytest.raises(ConfigurationError, match="task route must be"):
        TaskWSGIApp(route)


@pytest.mark.usefixtures("table")
def test_handle_environ_serves_with_the_given_handler_or_the_endpoint_of_the_path() -> None:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/_ah/probe", "wsgi.input": io.BytesIO()}
    assert handle_environ(environ).body == b"echo POST /_ah/probe \n"
    assert handle_environ({**environ, "PATH_INFO": "/mine/m/f"}).status == 403  # no endpoint claims it: the task's
    assert handle_environ({**environ, "PATH_INFO": "/mine/m/f"}, handler=echo).body == b"echo POST /mine/m/f \n"
