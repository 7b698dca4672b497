"""What the conformance tests use to talk to a served adapter (over the shared raw HTTP client) and task builders."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from im_task_testsupport.proof import proven
from im_task_testsupport.raw_http import Client, Reply, queue_headers

from im_task.runtime import get_transport
from im_task.transports import RecordingTransport, TaskRequest

__all__ = ["CAP", "Reply", "Served", "enqueue", "queue_headers", "sized_request"]

#: The ``max_body_size`` every served adapter is configured with, through its framework's settings.
CAP = 32 * 1024


@dataclass(frozen=True)
class Served:
    """An adapter's WSGI application served on 127.0.0.1.

    Attributes:
        adapter: The adapter's name in the registry.
        base_url: ``http://127.0.0.1:PORT``.
        route: The task route the application was built for.
    """

    adapter: str
    base_url: str
    route: str

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        chunked: bool = False,
    ) -> Reply:
        """Sends one request and reads the whole answer (see :class:`im_task_testsupport.raw_http.Client`).

        With ``chunked``, the body is sent with chunked transfer encoding and no ``Content-Length``.
        """
        return Client(self.base_url).request(method, path, body, headers, chunked=chunked)

    def deliver(
        self,
        task_request: TaskRequest,
        *,
        path: str | None = None,
        body: bytes | None = None,
        extra_headers: Mapping[str, str] | None = None,
        proof: bool = True,
        **task_headers: Any,
    ) -> Reply:
        """POSTs a task as a queue of im-task's own would, with the task headers of :func:`queue_headers`.

        Args:
            task_request: The task, as a transport received it.
            path: Where to POST it; the task's own URL by default.
            body: A body to send instead of the task's own.
            extra_headers: More request headers.
            proof: Sign the delivery as the local queue does, so that its retry count is trusted.
            **task_headers: Passed to :func:`queue_headers` (``retry_count``, ``family``...).
        """
        sent = task_request.body if body is None else body
        headers = {**task_request.headers, **queue_headers(**task_headers)}
        if proof:
            headers = proven(headers, sent)
        headers.update(extra_headers or {})
        return self.request("POST", path or task_request.url, sent, headers)


def enqueue(task_function: Callable[..., Any], *args: Any, **kwargs: Any) -> TaskRequest:
    """Calls a task function and returns the request the (recording) transport received."""
    transport = get_transport()
    assert isinstance(transport, RecordingTransport), "the conformance tests enqueue on a RecordingTransport"
    before = len(transport.requests)
    task_function(*args, **kwargs)
    assert len(transport.requests) == before + 1
    return transport.requests[-1]


def sized_request(task_function: Callable[[bytes], Any], size: int) -> TaskRequest:
    """Enqueues ``task_function(padding)`` with padding chosen so that the body is exactly ``size`` bytes."""
    padding = max(size - 1024, 0)
    for _ in range(8):
        request = enqueue(task_function, b"x" * padding)
        if len(request.body) == size:
            return request
        padding += size - len(request.body)
        if padding < 0:
            break
    raise AssertionError(f"Could not build a task body of exactly {size} bytes.")
