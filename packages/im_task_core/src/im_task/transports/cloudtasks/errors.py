"""What a Cloud Tasks failure means: retry it, or which of the library's errors to raise.

The mapping works on google-api-core's exception classes, which gRPC and REST
calls both raise (REST ones are chosen by HTTP status: 409 is ``Conflict``,
which for ``CreateTask`` means ``ALREADY_EXISTS``).
"""

from __future__ import annotations

from typing import Any

from im_task.errors import (
    EnqueueError,
    PermissionDeniedError,
    TaskTooLargeError,
    TransientEnqueueError,
    UnknownQueueError,
)
from im_task.transports.base import name_taken

__all__ = ["api_error_from_status", "is_already_exists", "is_transient", "is_unimplemented", "library_error"]


def _api() -> Any:
    from google.api_core import exceptions

    return exceptions


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may work when tried again.

    Transient are UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED
    and INTERNAL (over REST: 503, 504, 429, 500 and 502), and a connection
    that failed.
    """
    api = _api()
    if isinstance(
        exc,
        (
            api.ServiceUnavailable,
            api.GatewayTimeout,
            api.TooManyRequests,
            api.Aborted,
            api.InternalServerError,
            api.BadGateway,
        ),
    ):
        return True
    from google.auth import exceptions as auth_exceptions

    if isinstance(exc, auth_exceptions.TransportError):
        return True
    try:
        import requests
    except ImportError:  # pragma: no cover - google-auth's REST path brings requests
        return False
    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


def is_already_exists(exc: BaseException) -> bool:
    """Whether the call failed because the task name is taken (``ALREADY_EXISTS``, HTTP 409)."""
    api = _api()
    return isinstance(exc, api.Conflict) and not isinstance(exc, api.Aborted)


def is_unimplemented(exc: BaseException) -> bool:
    """Whether the server does not implement the method (``UNIMPLEMENTED``, HTTP 501): the emulator's batch."""
    return isinstance(exc, _api().MethodNotImplemented)


def api_error_from_status(code: int, message: str) -> Exception:
    """The google-api-core exception of a ``google.rpc.Status`` code (one failed item of a batch)."""
    exc: Exception = _api().from_grpc_status(_grpc_code(code), message)
    return exc


def _grpc_code(code: int) -> Any:
    import grpc

    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status
    return grpc.StatusCode.UNKNOWN


def library_error(exc: BaseException, *, queue: str, name: str | None, parent: str, attempts: int) -> EnqueueError:
    """The library's error for a failure of ``CreateTask`` (or of one item of a batch).

    Args:
        exc: What the client raised.
        queue: The queue's short name.
        name: The task's short name, if it has one.
        parent: The queue's full path.
        attempts: How many times the task was sent.

    Returns:
        ``TaskAlreadyExistsError``, ``UnknownQueueError``, ``PermissionDeniedError``,
        ``TaskTooLargeError``, ``TransientEnqueueError`` or ``EnqueueError``,
        with a message that says what to do.
    """
    api = _api()
    detail = str(exc) or type(exc).__name__
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if is_already_exists(exc):
        return name_taken(queue, name or "?", "exists (Cloud Tasks answered ALREADY_EXISTS)")
    if isinstance(exc, api.NotFound):
        return UnknownQueueError(
            f"Cloud Tasks has no queue {parent}: create it (gcloud tasks queues create {queue} --location=...) or "
            f"fix the queue name, project or location. ({detail})"
        )
    if isinstance(exc, (api.Forbidden, api.Unauthorized)):
        return PermissionDeniedError(
            f"Cloud Tasks refused to create a task on {parent}: grant the caller's service account "
            "roles/cloudtasks.enqueuer on the queue (and roles/iam.serviceAccountUser on the account of the "
            f"tasks' OIDC tokens, for HTTP targets); Cloud Tasks also answers so when the queue does not exist. "
            f"({detail})"
        )
    if isinstance(exc, api.BadRequest) and "too large" in detail.lower():
        return TaskTooLargeError(f"Cloud Tasks refused the task as too large for {parent}: {detail}")
    if is_transient(exc):
        return TransientEnqueueError(
            f"Cloud Tasks could not be reached or did not answer in time{tries} for queue {parent}; trying "
            f"later may work. ({detail})"
        )
    if isinstance(exc, api.FailedPrecondition):
        return EnqueueError(f"Cloud Tasks refused the task: the queue {parent} is paused or disabled? ({detail})")
    return EnqueueError(f"Cloud Tasks refused the task on {parent}: {detail}")
