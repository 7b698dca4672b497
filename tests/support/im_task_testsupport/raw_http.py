"""A raw HTTP client for the tests that talk to a served app, and the headers a queue sends with a task."""

from __future__ import annotations

import contextlib
import http.client
import io
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from im_task.headers import APPENGINE, Headers, make_task_headers

#: How long a request waits for its answer, in seconds.
TIMEOUT = 30.0


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, read whole.

    Attributes:
        status: The status code.
        headers: The response headers, case-insensitive.
        body: The response body.
    """

    status: int
    headers: Headers
    body: bytes


class Client:
    """Talks HTTP to a real server with ``http.client``, one connection per request.

    Args:
        base_url: The server's base URL, e.g. ``"http://127.0.0.1:54321"``.
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        *,
        chunked: bool = False,
        encode_chunked: bool = False,
    ) -> Reply:
        """Sends one request and reads the whole answer.

        ``headers`` may be a list of pairs, sent as given (a name repeated is
        sent twice), with a ``Content-Length`` of the body.

        With ``chunked`` (or ``encode_chunked``, its ``http.client`` name) the body is sent with
        chunked transfer encoding and no ``Content-Length``. A server that refuses a body (413)
        may close before reading all of it: its answer is read anyway.
        """
        chunked = chunked or encode_chunked
        if chunked and isinstance(body, bytes):
            body = iter([body])
        connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if headers is None or isinstance(headers, Mapping):
                    connection.request(method, path, body=body, headers=dict(headers or {}), encode_chunked=chunked)
                else:
                    data = body if isinstance(body, bytes) else b"".join(body or [])
                    connection.putrequest(method, path)
                    for name, value in headers:
                        connection.putheader(name, value)
                    connection.putheader("Content-Length", str(len(data)))
                    connection.endheaders(data)
            response = connection.getresponse()
            return Reply(response.status, Headers(response.getheaders()), response.read())
        finally:
            connection.close()


def queue_headers(*, queue_name: str = "default", task_name: str | None = None, **kwargs: Any) -> dict[str, str]:
    """The headers a queue sends with a task (``X-AppEngine-*`` unless ``family`` says otherwise)."""
    kwargs.setdefault("family", APPENGINE)
    return make_task_headers(queue_name=queue_name, task_name=task_name or f"t{uuid.uuid4().hex}", **kwargs)


class Body(io.BytesIO):
    """A request body that records whether the endpoint read it (a refusal must come before reading)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.was_read = False

    def read(self, size: int | None = -1) -> bytes:
        """Reads, and records that it was read."""
        self.was_read = True
        return super().read(size)
