"""``TaskResponse``: the endpoint's answer, as every adapter and in-process transport receives it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO

from im_task._instances import instance_of

__all__ = ["OUTCOME_HEADER", "OUTCOMES", "TEXT_PLAIN", "Handler", "TaskResponse", "answer", "outcome_of_status"]

TEXT_PLAIN = ("Content-Type", "text/plain; charset=utf-8")
#: The response header that says what became of the task; a queue reads it to tell a 200's outcomes apart.
OUTCOME_HEADER = "X-Im-Task-Outcome"
#: Every outcome: the task ran; failed permanently; gave up at its retry limit; was dropped (undecodable, or its
#: stored payload gone); will be retried (the queue should retry it); was refused (the request, not the task).
OUTCOMES = frozenset({"ran", "failed", "gave-up", "dropped", "retry", "refused"})
_REASONS = {
    200: "OK",
    400: "Bad Request",
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
        outcome: What became of the task, one of :data:`OUTCOMES`; sent as :data:`OUTCOME_HEADER`.
    """

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=lambda: [TEXT_PLAIN])
    exception: BaseException | None = None
    outcome: str = ""

    def __post_init__(self) -> None:
        if not self.outcome:
            object.__setattr__(self, "outcome", outcome_of_status(self.status))

    @property
    def status_line(self) -> str:
        """The status as WSGI wants it, e.g. ``"200 OK"``."""
        return f"{self.status} {_REASONS.get(self.status, '')}".rstrip()


def outcome_of_status(status: int) -> str:
    """The outcome a status means when nothing more is said: 2xx ran, 408 and 5xx retry, anything else refused."""
    if 200 <= status < 300:
        return "ran"
    if status == 408 or status >= 500:
        return "retry"
    return "refused"


def answer(
    status: int, text: str, exception: BaseException | None = None, *, outcome: str = "", **extra: str
) -> TaskResponse:
    """A plain-text response, e.g. ``answer(405, "Method Not Allowed", Allow="POST")``.

    Args:
        status: HTTP status code.
        text: The body's one line.
        exception: What decided the outcome, if anything.
        outcome: What became of the task (one of :data:`OUTCOMES`); by default what ``status`` means
            (:func:`outcome_of_status`).
        **extra: More response headers.

    Returns:
        The response, with its outcome in the :data:`OUTCOME_HEADER` header.

    Raises:
        ValueError: ``outcome`` is not one of :data:`OUTCOMES`.
    """
    outcome = outcome or outcome_of_status(status)
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}.")
    headers = [TEXT_PLAIN, (OUTCOME_HEADER, outcome), *extra.items()]
    fields = {"status": status, "body": text.encode() + b"\n", "headers": headers, "exception": exception}
    fields["outcome"] = outcome  # known: TaskResponse.__post_init__ would have nothing to do
    return instance_of(TaskResponse, fields)  # every request gets one


#: What serves an endpoint: ``handler(method, path, body, headers, remote_addr)`` returns the response.
#: In-process transports are given one (see :class:`~im_task.transports.InProcessTransport`).
Handler = Callable[[str, str, "bytes | IO[bytes]", Mapping[str, str], "str | None"], TaskResponse]
