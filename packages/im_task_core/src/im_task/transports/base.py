"""The transport contract: what every queue backend receives and must do, and the checks they share."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from im_task._instances import instance_of
from im_task.errors import EnqueueError, TaskAlreadyExistsError, TaskTooLargeError
from im_task.names import QUEUE_NAME, QUEUE_NAME_RULE, TASK_NAME, TASK_NAME_RULE
from im_task.retry import RetryOptions

__all__ = [
    "INLINE_TASK_LIMIT",
    "TaskNames",
    "TaskRequest",
    "Transport",
    "check_fields",
    "check_open",
    "check_request",
    "check_size",
    "name_taken",
    "named",
    "request_of",
    "task_size",
]

#: Largest task Cloud Tasks takes inline for App Engine targets, and the local queue's default.
INLINE_TASK_LIMIT = 100 * 1024


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


def request_of(fields: dict[str, Any]) -> TaskRequest:
    """``TaskRequest(**fields)`` at a fifth of its cost, for fields the caller made and checked.

    A frozen dataclass's ``__init__`` sets its fields one by one through
    ``object.__setattr__``; this gives the new instance ``fields`` as its
    ``__dict__``. ``fields`` must name every field of :class:`TaskRequest`,
    and the request keeps it: pass a dictionary no one else changes.

    Args:
        fields: Every field, by name (the dictionary becomes the request's).

    Returns:
        The request.
    """
    return instance_of(TaskRequest, fields)


def named(request: TaskRequest, name: str) -> TaskRequest:
    """``request`` with the name ``name``: ``dataclasses.replace(request, name=name)``, at a fifth of its cost.

    Args:
        request: A task.
        name: Its name.

    Returns:
        A new request, equal to ``request`` but for its name.
    """
    fields = request.__dict__.copy()
    fields["name"] = name
    return request_of(fields)


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
    * :meth:`enqueue_many` (``f.map``, ``f.starmap``) and :meth:`enqueue_async`
      (``await f.enqueue_async(...)``) have defaults built on :meth:`enqueue`;
      a queue with a batch or an async API overrides them, keeping their
      contracts.

    The queue later POSTs ``request.body`` to ``request.url`` with the task
    headers of Cloud Tasks (``X-AppEngine-QueueName``, ``-TaskName``,
    ``-TaskRetryCount``, ``-TaskExecutionCount``, ``-TaskETA``, or their
    ``X-CloudTasks-*`` twins) and retries any answer that is not 2xx.
    """

    #: Largest task, in bytes of method, URL, headers and body, accepted inline.
    max_task_size: int = INLINE_TASK_LIMIT
    #: Whether :meth:`enqueue` runs the task at once and lets the task's own exceptions reach the caller
    #: (``ImmediateTransport``); those are then not wrapped in ``EnqueueError``.
    runs_inline: bool = False
    #: Whether the queue delivers only to endpoints that share this process's data directory (the local queue)
    #: or this very process (the in-process transports), so that a generated development secret can sign its
    #: tasks; any other transport needs a configured secret (see :func:`im_task.config.uses_local_secret`).
    shares_data_directory: bool = False

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

    def enqueue_many(self, requests: Sequence[TaskRequest]) -> list[str | Exception | None]:
        """Hands several tasks to the queue, reporting each one's outcome.

        The default calls :meth:`enqueue` for one request after another. A
        queue with a batch API (one SQLite transaction, ``BatchCreateTasks``)
        overrides it.

        Args:
            requests: The tasks to send.

        Returns:
            One result per request, in order: the task's name (None when the
            queue does not tell it), or the exception that request failed with
            (what :meth:`enqueue` would have raised for it). A failure of some
            requests never stops the others.

        Raises:
            EnqueueError: Only when no task of the batch was enqueued and no
                per-request result can be given; the default never raises
                (a closed transport fails each request).
        """
        results: list[str | Exception | None] = []
        for request in requests:
            try:
                results.append(self.enqueue(request))
            except Exception as exc:  # that request's failure, to report; the others go on
                results.append(exc)
        return results

    async def enqueue_async(self, request: TaskRequest) -> str | None:
        """Hands one task to the queue without blocking the event loop.

        The default runs :meth:`enqueue` in a worker thread (with the
        caller's context variables). A queue with an async client overrides it.

        Args:
            request: The task to send.

        Returns:
            The task's name, or None when the queue does not tell it.

        Raises:
            TaskAlreadyExistsError: The name is taken.
            TaskTooLargeError: The task is over :attr:`max_task_size`.
            EnqueueError: The queue refused the task or could not be reached.
        """
        # Imported here, when a coroutine first runs (an event loop, hence asyncio, is then loaded anyway):
        # `import im_task` and `@task` must not pay for asyncio (tests/test_import_cost.py).
        import asyncio

        return await asyncio.to_thread(self.enqueue, request)

    def close(self) -> None:
        """Releases the transport's resources. The default does nothing."""

    def _enqueue_built(self, fields: dict[str, Any]) -> str | None:
        """Hands the queue a task the core built and checked itself, given by its fields (the common call).

        For the core only, on the path of every common call: ``fields``
        name every field of a :class:`TaskRequest` whose queue, URL and name
        pass :func:`check_fields` and whose size is within
        :attr:`max_task_size`; the dictionary is this call's own, to become
        the request's (:func:`request_of`). The default is
        ``enqueue(request_of(fields))``; a transport may skip the checks it
        would make of such a request, provided the :meth:`enqueue` in force
        still sees every task: when it is not the transport's own (a
        subclass's, a mixin's, one set on the class or the instance, such as
        a test's spy), the transport must call it instead.

        Args:
            fields: Every field of the request, by name.

        Returns:
            As :meth:`enqueue`.

        Raises:
            EnqueueError: As :meth:`enqueue`.
        """
        return self.enqueue(request_of(fields))


def task_size(request: TaskRequest) -> int:
    """The size Cloud Tasks counts for a task: method, URL, headers and body."""
    size = len("POST") + len(request.url) + len(request.body)
    for name, value in request.headers.items():  # a loop: cheaper than sum() over map() for a task's few headers
        size += len(name) + len(value)
    return size


def check_request(request: object, transport: Transport) -> TaskRequest:
    """The checks every transport makes of a task before accepting it.

    Args:
        request: What ``enqueue`` was given.
        transport: The transport (for its size limit and in messages).

    Returns:
        The request.

    Raises:
        EnqueueError: It is not a ``TaskRequest``, or its queue name, URL or
            task name is malformed.
        TaskTooLargeError: It is over ``transport.max_task_size``.
    """
    if type(request) is not TaskRequest and not isinstance(request, TaskRequest):
        raise EnqueueError(f"enqueue() takes a TaskRequest, not {type(request).__name__}.")
    check_fields(request.queue, request.url, request.name)
    if task_size(request) > transport.max_task_size:
        check_size(request, transport)  # raises, saying how large
    return request


def check_fields(queue: object, url: object, name: object) -> None:
    """The checks :func:`check_request` makes of a task's queue, URL and name.

    Args:
        queue: The queue's short name.
        url: The path of the task endpoint.
        name: The task's name, or None.

    Raises:
        EnqueueError: The queue name, URL or task name is malformed.
    """
    if type(queue) is not str or queue not in _GOOD_QUEUES:
        if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
            raise EnqueueError(f"Bad queue name {queue!r}: use {QUEUE_NAME_RULE}.")
        if type(queue) is str and len(_GOOD_QUEUES) < _GOOD_QUEUES_KEPT:
            _GOOD_QUEUES.add(queue)
    if not isinstance(url, str) or not url.startswith("/"):
        raise EnqueueError(f"A task URL is a path starting with '/', not {url!r}.")
    if name is not None and (not isinstance(name, str) or not TASK_NAME.fullmatch(name)):
        raise EnqueueError(f"Bad task name {name!r}: use {TASK_NAME_RULE}.")


#: Queue names that passed the check (a process uses few), so that each is matched against the rule once.
_GOOD_QUEUES: set[str] = set()
_GOOD_QUEUES_KEPT = 1000


def check_size(request: TaskRequest, transport: Transport) -> None:
    """Refuses a task over the transport's inline limit (also before a transactional task is written).

    Raises:
        TaskTooLargeError: Saying how large it is, the limit, and what to do.
    """
    size = task_size(request)
    if size > transport.max_task_size:
        raise TaskTooLargeError(
            f"The task {request.url} is {size} bytes (method, URL, headers and body), over the inline limit of "
            f"{transport.max_task_size} bytes of {type(transport).__name__}; send less data with the task "
            "(e.g. a key to load it with)."
        )


def check_open(closed: bool, transport: Transport) -> None:
    """Refuses a task on a closed transport.

    Raises:
        EnqueueError: The transport is closed.
    """
    if closed:
        raise EnqueueError(f"{transport!r} is closed; no task can be enqueued on it.")


def name_taken(queue: str, name: str, detail: str = "is already taken") -> TaskAlreadyExistsError:
    """The error for a task name in use (the one message every transport gives).

    Args:
        queue: The queue.
        name: The task name.
        detail: How it is taken, e.g. ``"is queued"``.

    Returns:
        The error, to raise.
    """
    return TaskAlreadyExistsError(
        f"A task named {name!r} {detail} on queue {queue!r}; a name can be used once while the queue remembers it."
    )


class TaskNames:
    """The names a transport has seen, refusing reused ones as a queue does. Thread-safe.

    Attributes:
        lock: Guards the names. A transport may hold it to claim a name and record its task at once
            (:meth:`claim_locked`), instead of taking a lock of its own after :meth:`claim`.
        claimed: The ``(queue, name)`` pairs taken, to read or change only while holding :attr:`lock`.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claimed: set[tuple[str, str]] = set()

    def claim(self, queue: str, name: str) -> None:
        """Takes a name on a queue.

        Raises:
            TaskAlreadyExistsError: It was taken before.
        """
        with self.lock:
            self.claim_locked(queue, name)

    def claim_locked(self, queue: str, name: str) -> None:
        """:meth:`claim`, for a caller that holds :attr:`lock`.

        Raises:
            TaskAlreadyExistsError: It was taken before.
        """
        claimed = self.claimed
        size = len(claimed)
        claimed.add((queue, name))  # one hash look-up: the set grows unless the name was taken
        if len(claimed) == size:
            raise name_taken(queue, name)

    def clear(self) -> None:
        """Forgets every name."""
        with self.lock:
            self.claimed.clear()
