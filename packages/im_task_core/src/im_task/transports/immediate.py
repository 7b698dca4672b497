"""A transport that runs each task at once, through the whole path, for unit tests."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

from im_task.deliveryproof import KeyringSource
from im_task.errors import PermanentTaskFailure
from im_task.response import Handler
from im_task.transports.base import INLINE_TASK_LIMIT, TaskRequest, check_open, check_request
from im_task.transports.inprocess import InProcessTransport

__all__ = ["ImmediateTransport"]


class ImmediateTransport(InProcessTransport):
    """Runs each task in the caller's thread as soon as it is enqueued.

    The call goes through everything a queued task does: it is serialised,
    signed, verified, deserialised and run by the endpoint, so what would
    fail in production fails here too. ``countdown`` and ``eta`` are ignored.
    Reused task names are refused, as by a queue.

    The task's exception reaches the caller, except ``PermanentTaskFailure``
    (which a queue would drop). With ``raise_exceptions=False`` nothing is
    raised and :attr:`responses` tells what happened.

    Args:
        handler: The endpoint handler to call; this process's endpoints when None
            (see :class:`~im_task.transports.InProcessTransport`).
        raise_exceptions: Re-raise the task's exception in the caller.
        max_task_size: Largest task accepted, in bytes.
        keyring: The keys its deliveries' proofs are signed with (see
            :class:`~im_task.transports.InProcessTransport`); the keyring in force when None.

    Example:
        >>> from im_task import configure
        >>> from im_task.transports import ImmediateTransport
        >>> configure(transport=ImmediateTransport())
    """

    runs_inline = True

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        raise_exceptions: bool = True,
        max_task_size: int = INLINE_TASK_LIMIT,
        keyring: KeyringSource = None,
    ) -> None:
        super().__init__(handler, max_task_size=max_task_size, keyring=keyring)
        self.raise_exceptions = raise_exceptions
        self.responses: list[tuple[TaskRequest, int]] = []
        self._lock = threading.Lock()

    def enqueue(self, request: TaskRequest) -> str:
        """Runs the task now; see :meth:`Transport.enqueue`.

        Raises:
            Exception: The task's own exception, unless ``raise_exceptions`` is off.
        """
        check_open(self.closed, self)
        check_request(request, self)
        name = request.name or uuid.uuid4().hex
        self.names.claim(request.queue, name)
        response = self.deliver(replace(request, name=name))
        with self._lock:
            self.responses.append((request, response.status))
        error = response.exception
        if self.raise_exceptions and error is not None and not isinstance(error, PermanentTaskFailure):
            raise error
        return name

    def __repr__(self) -> str:
        return "ImmediateTransport()"
