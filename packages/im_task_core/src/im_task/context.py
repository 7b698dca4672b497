"""What a running task knows of itself, through context variables.

The helpers answer inside a task (in the thread or coroutine that runs it)
and give neutral answers everywhere else.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from im_task.headers import Headers, TaskHeaders

__all__ = [
    "get_execution_count",
    "get_queue_name",
    "get_retry_count",
    "get_task_headers",
    "get_task_name",
    "is_from_task_queue",
    "log_as_retried",
]

_current: ContextVar[tuple[TaskHeaders, Headers] | None] = ContextVar("im_task_current", default=None)
_logger = logging.getLogger("im_task")


class task_context:  # named as the function it was: ``with task_context(task, headers):``
    """Marks the code inside as running the task ``task``.

    A class rather than a generator: the endpoint enters one per task, and this costs a third as much.

    Args:
        task: The queue's task headers.
        headers: The headers the task sees.
    """

    __slots__ = ("_current", "_token")

    def __init__(self, task: TaskHeaders, headers: Headers) -> None:
        self._current = (task, headers)

    def __enter__(self) -> None:
        self._token = _current.set(self._current)

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._token)


def is_from_task_queue() -> bool:
    """Whether the current code runs inside a task."""
    return _current.get() is not None


def get_retry_count() -> int:
    """Attempts made before this one of the current task; 0 outside a task."""
    current = _current.get()
    return current[0].retry_count if current else 0


def get_execution_count() -> int:
    """Earlier attempts of the current task that got a response other than 5xx; 0 outside a task."""
    current = _current.get()
    return current[0].execution_count if current else 0


def get_task_name() -> str | None:
    """Name of the current task, or None outside a task."""
    current = _current.get()
    return current[0].task_name if current else None


def get_queue_name() -> str | None:
    """Short name of the current task's queue, or None outside a task."""
    current = _current.get()
    return current[0].queue_name if current else None


def get_task_headers() -> Headers | None:
    """The current task's request headers (case-insensitive), or None outside a task."""
    current = _current.get()
    return current[1] if current else None


def log_as_retried(msg: str, *args: Any, logger: logging.Logger | None = None, **kwargs: Any) -> None:
    """Logs louder the more often the current task has been retried.

    INFO on the first attempt, WARNING on retry 1, ERROR on retry 2, CRITICAL
    from retry 3 on; ERROR outside a task, where a retry cannot save the day.

    Args:
        msg: The message, with ``%`` placeholders as in :mod:`logging`.
        *args: Values for the placeholders.
        logger: Logger to use; the ``im_task`` logger by default.
        **kwargs: Passed on to :meth:`logging.Logger.log` (``exc_info``, ``extra``...).
    """
    if not is_from_task_queue():
        level = logging.ERROR
    else:
        level = (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)[min(get_retry_count(), 3)]
    kwargs.setdefault("stacklevel", 2)
    (logger or _logger).log(level, msg, *args, **kwargs)
