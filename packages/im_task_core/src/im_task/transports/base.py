"""The transport contract: what every queue backend receives and must do."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from im_task.retry import RetryOptions

__all__ = ["TaskRequest", "Transport"]


@dataclass(frozen=True)
class TaskRequest:
    """One task, ready for a queue: an HTTP POST to make later.

    Attributes:
        queue: Short name of the queue, e.g. ``"default"``.
        url: Path of the task endpoint, e.g. ``"/_ah/task/app.tasks/send_mail"``.
        body: The signed envelope, sent as ``application/octet-stream``.
        headers: Headers to send with the task, ``Content-Type`` included.
        name: The task's name, or None to let the queue name it.
        schedule_time: When to run it (aware UTC datetime), or None for now.
        target: Service or version to route the task to, or None.
        dispatch_deadline: How long the queue waits for an answer, or None
            for the queue's default.
        retry_options: The task's own retry options, honoured by queues that
            can; the endpoint enforces ``task_retry_limit`` on every queue.
    """

    queue: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    schedule_time: dt.datetime | None = None
    target: str | None = None
    dispatch_deadline: dt.timedelta | None = None
    retry_options: RetryOptions | None = None


class Transport:
    """Base class of the queue backends.

    The contract:

    * :meth:`enqueue` is called once per task call, from the caller's thread,
      with a complete :class:`TaskRequest`. It either accepts the task durably
      and returns, or raises.
    * It returns the task's name: the given ``request.name``, or the name the
      queue chose (None when the queue does not say).
    * Errors are the library's: :class:`~im_task.TaskAlreadyExistsError` for a
      name in use, :class:`~im_task.TaskTooLargeError` for a task over the
      queue's size limit, :class:`~im_task.EnqueueError` for anything else.
      Nothing else may escape.
    * It must be safe to call from several threads at once.
    * :meth:`close` releases resources; enqueueing after it is an error. It
      may be called more than once.

    The queue later POSTs ``request.body`` to ``request.url`` with the task
    headers of Cloud Tasks (``X-AppEngine-QueueName``, ``-TaskName``,
    ``-TaskRetryCount``, ``-TaskExecutionCount``, ``-TaskETA``, or their
    ``X-CloudTasks-*`` twins) and retries any answer that is not 2xx.
    """

    #: Largest task, in bytes of method, URL, headers and body, accepted inline.
    max_task_size: int = 100 * 1024
    #: Whether :meth:`enqueue` runs the task at once and lets the task's own exceptions reach the caller
    #: (``ImmediateTransport``); those are then not wrapped in ``EnqueueError``.
    runs_inline: bool = False

    def enqueue(self, request: TaskRequest) -> str | None:
        """Hands one task to the queue.

        Args:
            request: The task to send.

        Returns:
            The task's name, or None when the queue does not tell it.

        Raises:
            TaskAlreadyExistsError: The name is taken.
            TaskTooLargeError: The task is over :attr:`max_task_size`.
            EnqueueError: The queue refused the task or could not be reached.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Releases the transport's resources. The default does nothing."""


def task_size(request: TaskRequest) -> int:
    """The size Cloud Tasks counts for a task: method, URL, headers and body."""
    header_bytes = sum(len(k) + len(v) for k, v in request.headers.items())
    return len("POST") + len(request.url) + header_bytes + len(request.body)
