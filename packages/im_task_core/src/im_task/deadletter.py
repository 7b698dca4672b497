"""Dead letters: what is kept of a task that failed permanently, gave up or was dropped.

A dead letter keeps the task's signed body as it was delivered, so that it
can be replayed through the configured transport once its cause is fixed,
and its last error, so that a person can see why it died. The endpoint
records one for every task it answers ``failed``, ``gave-up`` or
``dropped`` (see :data:`im_task.response.OUTCOMES`); the local queue records
one when it gives up on a task by its own retry options. Where they are
kept is a :class:`DeadLetterStore` (SQLite locally, Datastore in production).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["DEAD_OUTCOMES", "DeadLetter", "DeadLetterStore", "check_letter", "check_queue_filter"]

#: The outcomes that make a dead letter.
DEAD_OUTCOMES = frozenset({"failed", "gave-up", "dropped"})


@dataclass(frozen=True)
class DeadLetter:
    """A task that will not run again unless someone replays it.

    Attributes:
        name: The task's name on its queue.
        queue: The queue's short name.
        url: The path the task was delivered to, e.g. ``"/_ah/task/app.tasks/send_mail"``.
        body: The signed envelope, exactly as delivered.
        outcome: ``"failed"``, ``"gave-up"`` or ``"dropped"`` (:data:`DEAD_OUTCOMES`).
        attempts: How many times the task was tried.
        error: The last error: a traceback, or a one-line reason.
        headers: The task's own headers given at enqueue (never the queue's or the caller's).
        recorded_at: When it was recorded (aware UTC).
    """

    name: str
    queue: str
    url: str
    body: bytes
    outcome: str
    attempts: int
    error: str
    headers: dict[str, str] = field(default_factory=dict)
    recorded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))

    def __post_init__(self) -> None:
        for name in ("name", "queue", "url", "error"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"DeadLetter.{name} must be a str, not {type(getattr(self, name)).__name__}.")
        if not self.name or not self.queue:
            raise ValueError("A DeadLetter needs the task's name and queue.")
        if not isinstance(self.body, (bytes, bytearray, memoryview)):
            raise TypeError(f"DeadLetter.body must be bytes (the signed envelope), not {type(self.body).__name__}.")
        if self.outcome not in DEAD_OUTCOMES:
            raise ValueError(f"DeadLetter.outcome must be one of {sorted(DEAD_OUTCOMES)}, not {self.outcome!r}.")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 0:
            raise ValueError(f"DeadLetter.attempts must be a whole number >= 0, not {self.attempts!r}.")
        if not isinstance(self.headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise TypeError("DeadLetter.headers must be a mapping of str to str.")
        object.__setattr__(self, "headers", dict(self.headers))
        if not isinstance(self.recorded_at, dt.datetime) or self.recorded_at.tzinfo is None:
            raise ValueError(f"DeadLetter.recorded_at must be an aware datetime, not {self.recorded_at!r}.")
        object.__setattr__(self, "body", bytes(self.body))


@runtime_checkable
class DeadLetterStore(Protocol):
    """Where dead letters are kept. Implementations must be safe to use from several threads."""

    def record(self, letter: DeadLetter) -> None:
        """Keeps a dead letter; a second letter of the same queue and name replaces the first."""

    def get(self, queue: str, name: str) -> DeadLetter | None:
        """The dead letter of that task, or None."""

    def list(self, queue: str | None = None, *, limit: int | None = None) -> Iterator[DeadLetter]:
        """Dead letters, newest first, of one queue or of all."""

    def delete(self, queue: str, name: str) -> bool:
        """Forgets one dead letter; whether there was one."""

    def purge(self, queue: str | None = None) -> int:
        """Forgets every dead letter of one queue or of all; how many there were."""


def check_letter(letter: object) -> DeadLetter:
    """Refuses anything but a :class:`DeadLetter`, as every store's ``record`` does.

    Raises:
        TypeError: ``letter`` is not a ``DeadLetter``.
    """
    if not isinstance(letter, DeadLetter):
        raise TypeError(f"record() takes a DeadLetter, not {type(letter).__name__}.")
    return letter


def check_queue_filter(queue: object, limit: object) -> None:
    """Refuses a bad ``queue`` or ``limit`` argument of :meth:`DeadLetterStore.list` and ``purge``.

    Raises:
        ValueError: ``queue`` is neither None nor a non-empty string, or ``limit`` neither None nor a whole number >= 1.
    """
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ValueError(f"queue must be a queue name or None for every queue, not {queue!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number >= 1 or None, not {limit!r}.")
