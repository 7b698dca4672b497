"""A transport that records tasks instead of sending them, for assertions in tests."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

from im_task.errors import EnqueueError, TaskAlreadyExistsError, TaskTooLargeError
from im_task.executor import TaskResponse
from im_task.transports.base import TaskRequest, Transport, task_size
from im_task.transports.delivery import run_in_process

__all__ = ["RecordingTransport"]


class RecordingTransport(Transport):
    """Keeps every task it is given in :attr:`requests`, in order.

    It refuses reused names and oversized tasks as a real queue would, so
    tests see the same errors. :meth:`run_all` runs what was recorded through
    the real endpoint.

    Args:
        max_task_size: Largest task accepted, in bytes.

    Example:
        >>> from im_task import configure
        >>> from im_task.transports import RecordingTransport
        >>> recorder = RecordingTransport()
        >>> configure(transport=recorder)
    """

    def __init__(self, *, max_task_size: int = Transport.max_task_size) -> None:
        self.max_task_size = max_task_size
        self.requests: list[TaskRequest] = []
        self._names: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def enqueue(self, request: TaskRequest) -> str:
        """Records the task; see :meth:`Transport.enqueue`."""
        size = task_size(request)
        if size > self.max_task_size:
            raise TaskTooLargeError(f"The task is {size} bytes; the queue takes at most {self.max_task_size}.")
        with self._lock:
            if self._closed:
                raise EnqueueError("This RecordingTransport is closed.")
            name = request.name or uuid.uuid4().hex
            if (request.queue, name) in self._names:
                raise TaskAlreadyExistsError(f"Task {name!r} already exists on queue {request.queue!r}.")
            self._names.add((request.queue, name))
            self.requests.append(request if request.name else replace(request, name=name))
        return name

    def clear(self) -> None:
        """Forgets the recorded tasks and names."""
        with self._lock:
            self.requests.clear()
            self._names.clear()

    def run_all(self) -> list[TaskResponse]:
        """Runs the recorded tasks through the endpoint, in order, and forgets them.

        Tasks that these tasks enqueue are recorded anew and not run.

        Returns:
            The endpoint's response to each.
        """
        with self._lock:
            pending, self.requests = self.requests, []
        return [run_in_process(request) for request in pending]

    def close(self) -> None:
        """Refuses further tasks."""
        self._closed = True
