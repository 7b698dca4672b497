"""The endpoint table: an endpoint the core adds is served by every adapter, with no change to any adapter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import IO

import pytest
from conformance_support import Served, enqueue
from im_task_testsupport import sink as conformance_recorder

import im_task.endpoints
from im_task import task
from im_task.endpoints import Endpoint
from im_task.response import TaskResponse, answer

#: Where the probe endpoint is served: an exact path, beside the task route.
PROBE_PATH = "/_ah/im-task-probe"


def probe(
    method: str, path: str, body: bytes | IO[bytes], headers: Mapping[str, str], remote_addr: str | None
) -> TaskResponse:
    """A small real endpoint: POST echoes the path and the body; other methods get its own 405."""
    if method != "POST":
        return answer(405, f"probe: {method} is not POST", Allow="POST")
    length = int(headers.get("Content-Length") or 0)
    data = body if isinstance(body, bytes) else body.read(length)
    conformance_recorder.record("probe", path, data)
    return answer(200, f"probe {path} {data.decode()}")


@pytest.fixture
def serve_with_probe(serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Served]:
    """``serve``, with the probe endpoint added to the core's endpoint table before the app is built."""
    monkeypatch.setattr(
        im_task.endpoints,
        "ENDPOINTS",
        [*im_task.endpoints.ENDPOINTS, Endpoint("probe", probe, lambda: PROBE_PATH, prefix=False)],
    )
    return serve


def ran(value: object) -> None:
    conformance_recorder.record("ran", value)


def test_an_endpoint_added_to_the_table_is_served(serve_with_probe: Callable[..., Served]) -> None:
    served = serve_with_probe()
    reply = served.request("POST", PROBE_PATH, b"hello", {"Content-Type": "application/octet-stream"})
    assert (reply.status, reply.body) == (200, b"probe /_ah/im-task-probe hello\n")
    assert conformance_recorder.events() == [("probe", PROBE_PATH, b"hello")]


@pytest.mark.parametrize("method", ["GET", "PUT", "PROPFIND", "FROBNICATE"])
def test_every_method_reaches_the_added_endpoint(serve_with_probe: Callable[..., Served], method: str) -> None:
    reply = serve_with_probe().request(method, PROBE_PATH)
    assert (reply.status, reply.headers["Allow"]) == (405, "POST")
    assert reply.body == f"probe: {method} is not POST\n".encode()


@pytest.mark.parametrize("path", [PROBE_PATH + "/x", PROBE_PATH + "x", PROBE_PATH.upper()])
def test_an_exact_endpoint_serves_its_path_only(serve_with_probe: Callable[..., Served], path: str) -> None:
    reply = serve_with_probe().request("POST", path, b"hello")
    assert reply.status == 404
    assert conformance_recorder.events() == []


def test_the_task_endpoint_is_served_beside_it(serve_with_probe: Callable[..., Served]) -> None:
    served = serve_with_probe("/Internal/Tasks")
    request = enqueue(task(ran), "beside")  # made after the route is set, as at start-up
    assert request.url.startswith("/Internal/Tasks/")
    assert served.deliver(request).status == 200
    assert served.request("POST", PROBE_PATH, b"x").status == 200
    assert conformance_recorder.events() == [("ran", "beside"), ("probe", PROBE_PATH, b"x")]


@pytest.mark.parametrize("path", ["/_ah/task", "/_ah/task/", "/_ah/taskx/m/f"])
def test_a_prefix_endpoint_serves_only_paths_under_it(served_app: Served, path: str) -> None:
    """The task route itself, and the route with an empty task path, are no task URL in any adapter."""
    assert served_app.request("POST", path, b"x").status == 404
