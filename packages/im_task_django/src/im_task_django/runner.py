"""The im-task task that runs every Django task: :func:`run_django_task`.

:class:`~im_task_django.backends.ImTaskBackend` enqueues a call of it with
a JSON description of the Django task (its import path, arguments, result
id, queue...), so the task travels, is signed, checked and delivered as
every im-task task is. In the task endpoint it finds the Django task again
by its import path, marks its result running, sends ``task_started``, runs
it (a coroutine function to completion), records the outcome and sends
``task_finished``.

What the queue does next follows Django's contract, where a ``FAILED``
result is final: a task that raises is recorded as failed and the endpoint
answers so that the queue does not retry it (``PermanentTaskFailure``).
Two cases are retried: a task that raises im-task's ``SingularTaskFailure``
(recorded as an error, the result back to ``READY``), and any failure of the
runner itself (the results database cannot be written...), after which the
task runs again: delivery is at least once.

A delivery of a task whose result is already final is a queue's duplicate
and does not run it again (the outcome line says so), with one exception: a
``FAILED`` task that a person asked to run again (``im-task dead replay``,
the admin's "Replay", ``im-task queue retry``) after it failed. Those send
the task with a signed mark (:mod:`im_task.reruns`); the runner runs it
again, the result goes back to ``RUNNING`` and keeps its earlier errors. A
``SUCCESSFUL`` result is never run again.

SQLite answers "database is locked" at once, without waiting, to a
transaction that read before it writes while another one writes; the runner
tries such a write again a few times, briefly, before it fails the attempt.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.db import OperationalError, connections, transaction
from django.utils import timezone

from im_task import task
from im_task.context import get_retry_count, get_task_headers, get_task_name
from im_task.errors import PermanentTaskFailure, SingularTaskFailure
from im_task.outcomes import note_outcome
from im_task.reruns import rerun_time
from im_task_django.backends import SPEC_VERSION  # the version of the description run_django_task takes
from im_task_django.djangotasks import (
    TaskContext,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_backends,
    task_finished,
    task_started,
)
from im_task_django.models import TaskResultRecord
from im_task_django.results import error_of, find_task, result_database, result_from_record, update_record

__all__ = ["SPEC_VERSION", "FINAL_STATUSES", "run_django_task", "worker_id"]

logger = logging.getLogger("im_task.django")

#: Statuses after which a task is not run again.
FINAL_STATUSES = frozenset({"SUCCESSFUL", "FAILED"})
#: Most characters of a worker id.
WORKER_ID_LENGTH = 64
#: The pauses, in seconds, before each new try of a results write that SQLite refused as "database is locked".
LOCKED_PAUSES = (0.05, 0.2, 0.5, 1.0)

_T = TypeVar("_T")


def worker_id() -> str:
    """This process's worker id, as results record it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"[-WORKER_ID_LENGTH:]


@task
def run_django_task(spec: Mapping[str, Any]) -> None:
    """Runs one Django task in the task endpoint, recording its result and sending Django's signals.

    Args:
        spec: What :class:`~im_task_django.backends.ImTaskBackend` enqueued: ``backend`` (alias),
            ``task`` (import path), ``id`` (result id), ``queue_name``, ``priority``, ``run_after``
            and ``enqueued_at`` (ISO 8601 or None), ``args``, ``kwargs``, ``results`` (whether a row is kept).

    Raises:
        PermanentTaskFailure: The task failed, or cannot start (its result is ``FAILED``): not retried.
        SingularTaskFailure: The task asked to be retried (its result is ``READY`` again).
        Exception: The runner itself failed (the queue retries the task).
    """
    if spec.get("version") != SPEC_VERSION:
        raise PermanentTaskFailure(f"Unknown Django task description version {spec.get('version')!r}.")
    backend = task_backends[spec["backend"]]
    sender = type(backend)
    path = str(spec["task"])
    now = timezone.now()
    record = _unlocked(lambda: _claim(spec, now)) if spec["results"] else None
    if spec["results"] and record is None:
        return
    previous = list(record.worker_ids) if record is not None else []
    try:
        django_task = find_task(
            path,
            backend=spec["backend"],
            queue_name=spec["queue_name"],
            priority=spec["priority"],
            run_after=_moment(spec["run_after"]),
        )
    except Exception as exc:  # the code changed since the task was enqueued: it cannot start
        if record is not None:
            claimed, failure = record, exc
            _unlocked(lambda: _fail_to_start(claimed, failure, now))
        raise PermanentTaskFailure(f"Django task {_about(spec)} cannot start: {exc}") from exc
    if record is not None:
        result = result_from_record(record, django_task)
    else:
        result = TaskResult(
            task=django_task,
            id=str(spec["id"]),
            status=TaskResultStatus.RUNNING,
            enqueued_at=_moment(spec["enqueued_at"]),
            started_at=now,
            finished_at=None,
            last_attempted_at=now,
            args=spec["args"],
            kwargs=spec["kwargs"],
            backend=spec["backend"],
            errors=[],
            worker_ids=_attempts(previous),
        )
    task_started.send(sender=sender, task_result=result)
    try:
        if django_task.takes_context:
            value = django_task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
        else:
            value = django_task.call(*result.args, **result.kwargs)
        value = normalize_json(value)
    except SingularTaskFailure as exc:
        result.errors.append(error_of(exc))
        object.__setattr__(result, "status", TaskResultStatus.READY)
        _save(record, result)
        note_outcome(f"Django task {_about(spec)}: READY again")
        raise
    except Exception as exc:
        result.errors.append(error_of(exc))
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        object.__setattr__(result, "finished_at", timezone.now())
        _save(record, result)
        note_outcome(f"Django task {_about(spec)}: FAILED")
        task_finished.send(sender=sender, task_result=result)
        raise PermanentTaskFailure(f"Django task {_about(spec)} failed ({type(exc).__name__}); not retried.") from exc
    object.__setattr__(result, "_return_value", value)
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "finished_at", timezone.now())
    _save(record, result)
    note_outcome(f"Django task {_about(spec)}: SUCCESSFUL")
    task_finished.send(sender=sender, task_result=result)


def _about(spec: Mapping[str, Any]) -> str:
    """The task and its result id, as logs and dead letters name it: ``app.tasks.send (result 3f2a...)``."""
    return f"{spec['task']} (result {spec['id']})"


def _unlocked(action: Callable[[], _T]) -> _T:
    """Runs a results write; again, after a short pause, while SQLite answers "database is locked".

    Inside a transaction (``ATOMIC_REQUESTS``) a new try cannot help: the error is raised at once.
    """
    connection = connections[result_database()]
    for pause in (*LOCKED_PAUSES, None):
        try:
            return action()
        except OperationalError as exc:
            if pause is None or "locked" not in str(exc) or connection.in_atomic_block:
                raise
            logger.info("The results database is locked (%s); trying again in %.2f s.", exc, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def _attempts(previous: list[str]) -> list[str]:
    """The worker ids with this attempt's added: one per attempt the queue made, ``""`` for one never seen here."""
    ids = list(previous)
    ids += [""] * max(0, get_retry_count() - len(ids))
    ids.append(worker_id())
    return ids


def _claim(spec: Mapping[str, Any], now: dt.datetime) -> TaskResultRecord | None:
    """Marks the result running for this attempt; None when it is already final (a duplicate delivery).

    A row not there yet (the task was sent, without waiting for the commit, from a transaction still
    open) is made from the description; a write of the enqueuing transaction then waits for it or fails.
    A ``FAILED`` result asked for again after it failed (:func:`_asked_again`) runs again.
    """
    using = result_database()
    with transaction.atomic(using=using):
        record: TaskResultRecord
        record, _ = (
            TaskResultRecord.objects.using(using)
            .select_for_update()
            .get_or_create(pk=spec["id"], defaults=_defaults(spec))
        )
        fields = ["status", "started_at", "last_attempted_at", "worker_ids", "im_task_name"]
        if record.status in FINAL_STATUSES:
            if not _asked_again(record):
                why = (
                    "a SUCCESSFUL task is never run again"
                    if record.status == "SUCCESSFUL"
                    else "a duplicate delivery does not run it again (replay it, or `im-task queue retry` it, to)"
                )
                note_outcome(f"Django task {_about(spec)} is already {record.status}: {why}", skipped=True)
                logger.info("Django task %s is already %s; %s.", _about(spec), record.status, why)
                return None
            logger.info("Django task %s was FAILED and is asked for again: it runs again.", _about(spec))
            record.finished_at = None
            fields.append("finished_at")
        record.status = "RUNNING"
        record.started_at = record.started_at or now
        record.last_attempted_at = now
        record.worker_ids = _attempts([str(worker) for worker in record.worker_ids or []])
        record.im_task_name = (get_task_name() or "")[:500]
        record.save(using=using, update_fields=fields)
    return record


def _asked_again(record: TaskResultRecord) -> bool:
    """Whether this delivery of a final task is a person's request to run it again, made after it failed.

    The mark is signed (:mod:`im_task.reruns`) and dated: a duplicate delivery of the re-run itself,
    once that finished, is older than the finish and does not run it a third time.
    """
    if record.status != "FAILED" or record.finished_at is None:
        return False
    asked = rerun_time(get_task_headers())
    return asked is not None and asked > record.finished_at.timestamp()


def _defaults(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "task_path": spec["task"],
        "backend": spec["backend"],
        "queue_name": spec["queue_name"],
        "priority": spec["priority"],
        "takes_context": bool(spec.get("takes_context")),
        "run_after": _moment(spec["run_after"]),
        "args": spec["args"],
        "kwargs": spec["kwargs"],
        "enqueued_at": _moment(spec["enqueued_at"]),
    }


def _fail_to_start(record: TaskResultRecord, exc: Exception, now: dt.datetime) -> None:
    error = error_of(exc)
    record.status = "FAILED"
    record.finished_at = now
    record.errors = [*record.errors, {"exception_class_path": error.exception_class_path, "traceback": error.traceback}]
    record.save(using=result_database(), update_fields=("status", "finished_at", "errors"))


def _save(record: TaskResultRecord | None, result: Any) -> None:
    if record is not None:
        claimed = record
        _unlocked(lambda: update_record(claimed, result))


def _moment(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None
