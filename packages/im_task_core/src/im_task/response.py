"""``TaskResponse``: the endpoint's answer, as every adapter and in-process transport receives it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO

__all__ = ["TEXT_PLAIN", "Handler", "TaskResponse", "answer"]

TEXT_PLAIN = ("Content-Type", "text/plain; charset=utf-8")
_REASONS = {
    200: "OK",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    500: "Internal Server Error",
}


@dataclass(frozen=True)
class TaskResponse:
    """The endpoint's answer, for an adapter to send.

    Attributes:
        status: HTTP status code.
        body: Short plain-text body; never a traceback.
        headers: Response headers.
        exception: The exception that decided the outcome, if any (for
            in-process transports and tests; never sent).
    """

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=lambda: [TEXT_PLAIN])
    exception: BaseException | None = None

    @property
    def status_line(self) -> str:
        """The status as WSGI wants it, e.g. ``"200 OK"``."""
        return f"{self.status} {_REASONS.get(self.status, '')}".rstrip()


def answer(status: int, text: str, exception: BaseException | None = None, **extra: str) -> TaskResponse:
    """A plain-text response, e.g. ``answer(405, "Method Not Allowed", Allow="POST")``.

    Args:
        status: HTTP status code.
        text: The body's one line.
        exception: What decided the outcome, if anything.
        **extra: More response headers.

    Returns:
        The response.
    """
    return TaskResponse(status, text.encode() + b"\n", [TEXT_PLAIN, *extra.items()], exception)


#: What serves an endpoint: ``handler(method, path, body, headers, remote_addr)`` returns the response.
#: In-process transports are given one (see :class:`~im_task.transports.InProcessTransport`).
Handler = Callable[[str, str, "bytes | IO[bytes]", Mapping[str, str], "str | None"], TaskResponse]
