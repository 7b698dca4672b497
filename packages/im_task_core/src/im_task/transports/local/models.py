"""The read-only views the local queue gives of itself: task states, tasks, counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FINISHED_STATES", "STATES", "QueueLimits", "QueueStats", "TaskDetail", "TaskInfo", "TaskState"]

#: Where a task is in its life: waiting, being delivered, ran, failed permanently, given up on, dropped.
TaskState = Literal["queued", "running", "done", "failed", "gave-up", "dropped"]
#: Every task state, in the order of a task's life.
STATES: tuple[TaskState, ...] = ("queued", "running", "done", "failed", "gave-up", "dropped")
#: The states a task ends in: it runs no more unless retried.
FINISHED_STATES: tuple[TaskState, ...] = ("done", "failed", "gave-up", "dropped")


@dataclass(frozen=True)
class TaskInfo:
    """One task of the local queue, as stored.

    Attributes:
        queue: Short name of the queue.
        name: The task's name.
        url: Path the task is POSTed to.
        state: ``"queued"``, ``"running"``, ``"done"`` (it ran), ``"failed"`` (it
            failed permanently), ``"gave-up"`` (its retry limit was reached, by
            the endpoint or by the queue) or ``"dropped"`` (undecodable, or its
            stored payload was gone).
        attempts: Deliveries started so far.
        executions: Deliveries that got a response other than 5xx.
        eta: When the task was scheduled to run first.
        due: When a queued task may run next (its eta, or the end of its retry
            backoff); for a running task, when its lease runs out.
        created: When it was enqueued.
        finished: When it was done or given up on, else None.
        last_status: HTTP status of the last attempt, None when there was no
            answer (or no attempt yet).
        last_error: Why the last attempt failed (its retry reason), or None.
        size: Bytes of body still stored (0 once the task is done).
        outcome: What the endpoint said became of the task at the last attempt
            (its ``X-Im-Task-Outcome``: ``ran``, ``failed``, ``gave-up``,
            ``dropped``, ``retry``, ``refused``), or None when it said nothing.
    """

    queue: str
    name: str
    url: str
    state: TaskState
    attempts: int
    executions: int
    eta: dt.datetime
    due: dt.datetime
    created: dt.datetime
    finished: dt.datetime | None
    last_status: int | None
    last_error: str | None
    size: int
    outcome: str | None = None


@dataclass(frozen=True)
class TaskDetail:
    """One task with what ``im-task queue show`` prints: its body and the last error in full.

    Attributes:
        info: The task as listed.
        headers: The task's own headers, given at enqueue.
        body: The stored body (the signed envelope); empty once the task is done.
        error_detail: The last error in full: a traceback for an in-process
            delivery that raised, else the status and the body the endpoint
            answered (never more than a few KB); None when there was none.
    """

    info: TaskInfo
    headers: dict[str, str]
    body: bytes
    error_detail: str | None


@dataclass(frozen=True)
class QueueLimits:
    """How fast the local queue dispatches one queue's tasks, as Cloud Tasks' ``queue.yaml`` says.

    Like ``rate`` and ``max_concurrent_requests`` there: a target that is
    down then fails a few attempts a second, not every due task's at once. The defaults are those of Cloud Tasks.

    Attributes:
        max_dispatches_per_second: Most attempts started per second (a token
            bucket holding one second of them, so short bursts go at once).
        max_concurrent_dispatches: Most attempts of this queue in flight at once
            (the transport's ``concurrency`` caps all queues together).

    Raises:
        ValueError: A limit that is not a number > 0.
    """

    max_dispatches_per_second: float = 500.0
    max_concurrent_dispatches: int = 1000

    def __post_init__(self) -> None:
        rate = self.max_dispatches_per_second
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
            raise ValueError(f"max_dispatches_per_second must be a number > 0, not {rate!r}.")
        most = self.max_concurrent_dispatches
        if isinstance(most, bool) or not isinstance(most, int) or most < 1:
            raise ValueError(f"max_concurrent_dispatches must be a whole number >= 1, not {most!r}.")


@dataclass(frozen=True)
class QueueStats:
    """Counts of tasks in the store, and of what this transport did.

    The state counts cover every process sharing the SQLite file; the three
    counters only this transport's dispatcher since it was made.

    Attributes:
        queued: Tasks waiting, whether due now or scheduled later.
        due: The queued tasks that are due now.
        running: Tasks being delivered.
        done: Tasks that ran, still remembered (kept for the name retention).
        failed: Tasks that failed permanently, kept until purged or retried.
        gave_up: Tasks given up on at their retry limit, kept until purged or retried.
        dropped: Tasks dropped as undecodable (or their stored payload gone), kept until purged.
        delivered: Deliveries answered with 2xx by this transport.
        retried: Failed deliveries this transport scheduled again.
        given_up: Tasks this transport's attempts ended as failed, gave up or dropped.
        ended: ``given_up`` by the state those tasks ended in: ``{"failed": 1, "gave-up": 2}``
            (a state none ended in is left out).
    """

    queued: int = 0
    due: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    gave_up: int = 0
    dropped: int = 0
    delivered: int = 0
    retried: int = 0
    given_up: int = 0
    ended: Mapping[str, int] = field(default_factory=dict)
