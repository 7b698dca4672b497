"""Results of Django tasks: :class:`~im_task_django.models.TaskResultRecord` rows as Django's ``TaskResult``.

The backend writes a row when it enqueues a task, the runner updates it
as the task runs, and ``get_result()`` reads it back through
:func:`result_from_record`. Rows live in the database ``IM_TASK["DATABASE"]``
names (the outbox's), so that a row written in ``transaction.atomic()``
commits or rolls back with the task itself.
"""

from __future__ import annotations

import dataclasses
import traceback
import uuid
from typing import Any

from django.utils.module_loading import import_string

from im_task_django.conf import get_app_settings
from im_task_django.djangotasks import (
    InvalidTask,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)
from im_task_django.models import TaskResultRecord

__all__ = [
    "error_of",
    "find_task",
    "load_record",
    "record_from_result",
    "result_database",
    "result_from_record",
    "update_record",
]

#: The fields of a row that change while its task runs.
RUN_FIELDS = ("status", "started_at", "finished_at", "last_attempted_at", "return_value", "errors", "worker_ids")


def result_database() -> str:
    """The alias of the database that holds the results: ``IM_TASK["DATABASE"]``, the outbox's."""
    return get_app_settings().database


def find_task(path: str, *, backend: str, queue_name: str, priority: int, run_after: Any) -> Any:
    """The Django task at ``path`` (``module.function``), with the queue, priority and time it was enqueued with.

    Raises:
        InvalidTask: ``path`` does not name a task made with Django's ``@task``.
        ImportError: ``path`` cannot be imported (the code changed since the task was enqueued).
    """
    found = import_string(path)
    if not isinstance(found, Task):
        raise InvalidTask(
            f"{path} is a {type(found).__name__}, not a Django task: tasks run by im-task are found again by their "
            "import path, so the module-level name must be the @task-decorated function."
        )
    return dataclasses.replace(found, backend=backend, queue_name=queue_name, priority=priority, run_after=run_after)


def record_from_result(result: Any) -> TaskResultRecord:
    """A new row for a result just made by ``enqueue()`` (not saved)."""
    task = result.task
    return TaskResultRecord(
        id=uuid.UUID(result.id),
        task_path=task.module_path,
        backend=result.backend,
        queue_name=task.queue_name,
        priority=task.priority,
        takes_context=task.takes_context,
        run_after=task.run_after,
        status=str(result.status.value),
        args=result.args,
        kwargs=result.kwargs,
        enqueued_at=result.enqueued_at,
        errors=[],
        worker_ids=[],
    )


def result_from_record(record: TaskResultRecord, task: Any = None) -> Any:
    """Django's ``TaskResult`` of a row.

    Args:
        record: The row.
        task: Its task, when known; found again by the row's ``task_path`` when None.

    Raises:
        InvalidTask: The row's ``task_path`` no longer names a Django task.
        ImportError: The row's ``task_path`` cannot be imported.
    """
    if task is None:
        task = find_task(
            record.task_path,
            backend=record.backend,
            queue_name=record.queue_name,
            priority=record.priority,
            run_after=record.run_after,
        )
    result = TaskResult(
        task=task,
        id=str(record.id),
        status=TaskResultStatus(record.status),
        enqueued_at=record.enqueued_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        last_attempted_at=record.last_attempted_at,
        args=list(record.args or []),
        kwargs=dict(record.kwargs or {}),
        backend=record.backend,
        errors=[TaskError(**error) for error in record.errors or []],
        worker_ids=[str(worker) for worker in record.worker_ids or []],
    )
    object.__setattr__(result, "_return_value", record.return_value)  # as Django's own backends set it
    return result


def update_record(record: TaskResultRecord, result: Any) -> None:
    """Copies what changed while the task ran from ``result`` into ``record`` and saves those fields."""
    record.status = str(result.status.value)
    record.started_at = result.started_at
    record.finished_at = result.finished_at
    record.last_attempted_at = result.last_attempted_at
    record.return_value = result._return_value
    record.errors = [{"exception_class_path": e.exception_class_path, "traceback": e.traceback} for e in result.errors]
    record.worker_ids = list(result.worker_ids)
    record.save(using=result_database(), update_fields=RUN_FIELDS)


def load_record(result_id: Any) -> TaskResultRecord:
    """The row of a result id.

    Raises:
        TaskResultDoesNotExist: No such row (or ``result_id`` is no result id at all).
    """
    try:
        key = uuid.UUID(str(result_id))
    except ValueError:
        raise TaskResultDoesNotExist(f"{result_id!r} is not the id of a task result (they are UUIDs).") from None
    record: TaskResultRecord | None = TaskResultRecord.objects.using(result_database()).filter(pk=key).first()
    if record is None:
        raise TaskResultDoesNotExist(f"No task result {result_id}: never enqueued, rolled back, or deleted.")
    return record


def error_of(exc: BaseException) -> Any:
    """Django's ``TaskError`` of an exception: its class's import path and its formatted traceback."""
    kind = type(exc)
    return TaskError(
        exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
        traceback="".join(traceback.format_exception(kind, exc, exc.__traceback__)),
    )
