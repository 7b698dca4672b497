"""The exception tree of im-task: everything the library raises derives from :class:`Error`."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadTransactionStateError",
    "BodyTooLargeError",
    "BulkEnqueueError",
    "CallerError",
    "ConfigurationError",
    "EnqueueError",
    "Error",
    "PermanentTaskFailure",
    "RetryTaskException",
    "SignatureError",
    "SingularTaskFailure",
    "TaskAlreadyExistsError",
    "TaskTooLargeError",
    "TransientEnqueueError",
    "UnknownQueueError",
    "UnreadableBodyError",
    "PermissionDeniedError",
]


class Error(Exception):
    """Root of every exception raised by im-task."""


class ConfigurationError(Error, ValueError):
    """A setting, an option or an argument is invalid; the message says what to change."""


class EnqueueError(Error):
    """A task could not be serialised or handed to its queue."""


class TaskAlreadyExistsError(EnqueueError):
    """A task with the same name exists, or existed recently, on the queue.

    Code that makes named tasks to run something at most once catches this.
    """


class TaskTooLargeError(EnqueueError):
    """The task is larger than its queue accepts inline."""


class UnknownQueueError(EnqueueError):
    """The queue does not exist (create it, e.g. with ``gcloud tasks queues create``, or fix its name)."""


class PermissionDeniedError(EnqueueError):
    """The queue refused the caller: its credentials lack a role (``roles/cloudtasks.enqueuer``, ...)."""


class TransientEnqueueError(EnqueueError):
    """The queue could not be reached or did not answer in time, even after retries; trying later may work."""


class BulkEnqueueError(EnqueueError):
    """Some calls of a bulk enqueue (``map``, ``starmap``) failed; the others were enqueued.

    On a transport that runs tasks inline (``ImmediateTransport``), a task
    that raised is a failed call too: ``errors`` holds its own exception.

    Attributes:
        handles: One entry per call, in order: its ``TaskHandle``, or None where it failed.
        errors: The failures, by the index of their call, in order.
    """

    def __init__(self, message: str, handles: list[Any], errors: dict[int, Exception]) -> None:
        super().__init__(message)
        self.handles = handles
        self.errors = errors

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled with all three arguments (the default passes the message only), e.g. across processes
        return (type(self), (str(self), self.handles, self.errors))


class BadTransactionStateError(EnqueueError):
    """``transactional=True`` was used where there is no transaction to join."""


class CallerError(Error):
    """The caller check refused a request: answered 403, nothing is unpickled.

    The message says why, for the log; it never contains the token.
    """


class SignatureError(Error):
    """A task envelope did not verify: it was forged, corrupted or signed with an unknown key."""


class BodyTooLargeError(Error):
    """A request body is over ``max_body_size``: answered 413, and nothing is read past the limit."""


class UnreadableBodyError(Error):
    """A request body cannot be read (malformed chunked encoding, a connection reset, a truncated body): 400."""


class PermanentTaskFailure(Error):
    """Raised by a task to stop for good: answered 200, logged, never retried."""


class SingularTaskFailure(Error):
    """Raised by a task to fail this attempt quietly: answered 408 and retried."""


class RetryTaskException(Error):
    """Raised by a task to ask for a retry: answered 500 and retried."""
