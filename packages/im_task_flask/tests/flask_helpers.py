"""HTTP helpers of the Flask adapter tests (a module of its own: test modules import it by name)."""

from __future__ import annotations

import http.client
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The secret every test is configured with.
TEST_SECRET = "flask-test-secret-0123456789"


@dataclass(frozen=True)
class Reply:
    """An HTTP response, read whole."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes


class Client:
    """Talks HTTP to a real server with ``http.client``, one connection per request."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        encode_chunked: bool = False,
    ) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}), encode_chunked=encode_chunked)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()
