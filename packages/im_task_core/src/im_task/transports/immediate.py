"""A transport that runs each task at once, through the whole path, for unit tests."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

from im_task.errors import EnqueueError, PermanentTaskFailure, TaskAlreadyExistsError, TaskTooLargeError
from im_task.transports.base import TaskRequest, Transport, task_size
from im_task.transports.delivery import run_in_process

__all__ = ["ImmediateTransport"]


class ImmediateTransport(Transport):
    """Runs each task in the caller's thread as soon as it is enqueued.

    The call goes through everything a queued task does: it is serialised,
    signed, verified, deserialised and run by the endpoint, so what would
    fail in production fails here too. ``countdown`` and ``eta`` are ignored.
    Reused task names are refused, as by a queue.

    The task's exception reaches the caller, except ``PermanentTaskFailure``
    (which a queue would drop). With ``raise_exceptions=False`` nothing is
    raised and :attr:`responses` tells what happened.

    Args:
        raise_exceptions: Re-raise the task's exception in the caller.
        max_task_size: Largest task accepted, in bytes.
    """

    runs_inline = True

    def __init__(self, *, raise_exceptions: bool = True, max_task_size: int = Transport.max_task_size) -> None:
        self.raise_exceptions = raise_exceptions
        self.max_task_size = max_task_size
        self.responses: list[tuple[TaskRequest, int]] = []
        self._names: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def enqueue(self, request: TaskRequest) -> str:
        """Runs the task now; see :meth:`Transport.enqueue`.

        Raises:
            Exception: The task's own exception, unless ``raise_exceptions`` is off.
        """
        size = task_size(request)
        if size > self.max_task_size:
            raise TaskTooLargeError(f"The task is {size} bytes; the queue takes at most {self.max_task_size}.")
        name = request.name or uuid.uuid4().hex
        with self._lock:
            if self._closed:
                raise EnqueueError("This ImmediateTransport is closed.")
            if (request.queue, name) in self._names:
                raise TaskAlreadyExistsError(f"Task {name!r} already exists on queue {request.queue!r}.")
            self._names.add((request.queue, name))
        response = run_in_process(replace(request, name=name))
        with self._lock:
            self.responses.append((request, response.status))
        error = response.exception
        if self.raise_exceptions and error is not None and not isinstance(error, PermanentTaskFailure):
            raise error
        return name

    def close(self) -> None:
        """Refuses further tasks."""
        self._closed = True
