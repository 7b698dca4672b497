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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["DEAD_OUTCOMES", "DeadLetter", "DeadLetterStore"]

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
