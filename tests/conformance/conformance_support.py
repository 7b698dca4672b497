"""What the conformance tests use to talk to a served adapter: a raw HTTP client and task builders."""

from __future__ import annotations

import contextlib
import http.client
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from im_task.runtime import get_transport
from im_task.headers import APPENGINE, Headers, make_task_headers
from im_task.transports import RecordingTransport, TaskRequest

#: The ``max_body_size`` every served adapter is configured with, through its framework's settings.
CAP = 32 * 1024
#: How long a test waits for any one answer.
TIMEOUT = 30.0


@dataclass(frozen=True)
class Reply:
    """An HTTP answer.

    Attributes:
        status: The status code.
        headers: The response headers, case-insensitive.
        body: The response body.
    """

    status: int
    headers: Headers
    body: bytes


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
        """Sends one request and reads the whole answer.

        With ``chunked``, the body is sent with chunked transfer encoding and no ``Content-Length``.
        """
        parts = urlsplit(self.base_url)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=TIMEOUT)
        try:
            # A server refusing a body (413) may close before reading all of it: read its answer anyway.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                payload = iter([body]) if chunked else body
                connection.request(method, path, body=payload, headers=dict(headers or {}), encode_chunked=chunked)
            response = connection.getresponse()
            return Reply(response.status, Headers(response.getheaders()), response.read())
        finally:
            connection.close()

    def deliver(
        self,
        task_request: TaskRequest,
        *,
        path: str | None = None,
        body: bytes | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **task_headers: Any,
    ) -> Reply:
        """POSTs a task as a queue would, with the task headers of :func:`queue_headers`.

        Args:
            task_request: The task, as a transport received it.
            path: Where to POST it; the task's own URL by default.
            body: A body to send instead of the task's own.
            extra_headers: More request headers.
            **task_headers: Passed to :func:`queue_headers` (``retry_count``, ``family``...).
        """
        headers = {**task_request.headers, **queue_headers(**task_headers), **(extra_headers or {})}
        return self.request("POST", path or task_request.url, task_request.body if body is None else body, headers)


def queue_headers(*, queue_name: str = "default", task_name: str | None = None, **kwargs: Any) -> dict[str, str]:
    """The headers a queue sends with a task (``X-AppEngine-*`` unless ``family`` says otherwise)."""
    kwargs.setdefault("family", APPENGINE)
    return make_task_headers(queue_name=queue_name, task_name=task_name or f"t{uuid.uuid4().hex}", **kwargs)


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
