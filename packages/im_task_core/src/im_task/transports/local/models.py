"""The read-only views the local queue gives of itself: task states, tasks, counts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

__all__ = ["STATES", "QueueStats", "TaskInfo", "TaskState"]

#: Where a task is in its life: waiting, being delivered, delivered, given up on.
TaskState = Literal["queued", "running", "done", "failed"]
#: Every task state, in the order of a task's life.
STATES: tuple[TaskState, ...] = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class TaskInfo:
    """One task of the local queue, as stored.

    Attributes:
        queue: Short name of the queue.
        name: The task's name.
        url: Path the task is POSTed to.
        state: ``"queued"``, ``"running"``, ``"done"`` or ``"failed"``.
        attempts: Deliveries started so far.
        executions: Deliveries that got a response other than 5xx.
        eta: When the task was scheduled to run first.
        due: When a queued task may run next (its eta, or the end of its retry
            backoff); for a running task, when its lease runs out.
        created: When it was enqueued.
        finished: When it was done or given up on, else None.
        last_status: HTTP status of the last attempt, None when there was no
            answer (or no attempt yet).
        last_error: Why the last attempt failed, or None.
        size: Bytes of body still stored (0 once the task is done).
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


@dataclass(frozen=True)
class QueueStats:
    """Counts of tasks in the store, and of what this transport did.

    The state counts cover every process sharing the SQLite file; the three
    counters only this transport's dispatcher since it was made.

    Attributes:
        queued: Tasks waiting, whether due now or scheduled later.
        due: The queued tasks that are due now.
        running: Tasks being delivered.
        done: Delivered tasks still remembered (kept for the name retention).
        failed: Tasks given up on, kept until purged.
        delivered: Deliveries answered with 2xx by this transport.
        retried: Failed deliveries this transport scheduled again.
        given_up: Tasks this transport marked failed.
    """

    queued: int = 0
    due: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    delivered: int = 0
    retried: int = 0
    given_up: int = 0
