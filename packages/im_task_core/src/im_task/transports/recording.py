"""A transport that records tasks instead of sending them, for assertions in tests."""

from __future__ import annotations

from typing import Any

from im_task.deliveryproof import KeyringSource
from im_task.names import ProcessSequence
from im_task.response import Handler, TaskResponse
from im_task.transports.base import (
    INLINE_TASK_LIMIT,
    TaskRequest,
    check_open,
    check_request,
    name_taken,
    named,
    request_of,
)
from im_task.transports.inprocess import InProcessTransport

__all__ = ["RecordingTransport"]


class RecordingTransport(InProcessTransport):
    """Keeps every task it is given in :attr:`requests`, in order.

    It refuses reused names and oversized tasks as a real queue would, so
    tests see the same errors. :meth:`run_all` runs what was recorded through
    the real endpoint.

    Args:
        handler: The endpoint handler :meth:`run_all` calls; this process's
            endpoints when None (see :class:`~im_task.transports.InProcessTransport`).
        max_task_size: Largest task accepted, in bytes.
        keyring: The keys its deliveries' proofs are signed with (see
            :class:`~im_task.transports.InProcessTransport`); the keyring in force when None.

    Example:
        >>> from im_task import configure
        >>> from im_task.transports import RecordingTransport
        >>> recorder = RecordingTransport()
        >>> configure(transport=recorder)
    """

    def __init__(
        self, handler: Handler | None = None, *, max_task_size: int = INLINE_TASK_LIMIT, keyring: KeyringSource = None
    ) -> None:
        super().__init__(handler, max_task_size=max_task_size, keyring=keyring)
        self.requests: list[TaskRequest] = []
        self._lock = self.names.lock  # one lock for a task's name and its record (see enqueue)
        self._claimed = self.names.claimed

    def enqueue(self, request: TaskRequest) -> str:
        """Records the task; see :meth:`Transport.enqueue`."""
        if self.closed:
            check_open(True, self)
        check_request(request, self)
        name = request.name
        if not name:
            name = f"{_names.prefix}{next(_names.counter):08x}"  # _names.next_name(): 32 hex digits or more
            request = named(request, name)
        names = self.names
        lock = names.lock
        lock.acquire()  # not `with`: half its cost, on the path of every task
        try:
            names.claim_locked(request.queue, name)
            self.requests.append(request)
        finally:
            lock.release()
        return name

    def _enqueue_built(self, fields: dict[str, Any]) -> str | None:
        """Records a task the core built and checked (see :meth:`Transport._enqueue_built`).

        What :meth:`enqueue` does, without checking the request again and
        without a second, named, request: the fields become the recorded
        request, named once its name is claimed. An ``enqueue`` other than
        this class's in force (a subclass's, a mixin's, one set on the class
        or the instance: a spy) gets every task through it instead.
        """
        # Closed, or another enqueue is the one a caller reaches: the usual way
        if self.closed or type(self).enqueue is not _OWN_ENQUEUE or "enqueue" in self.__dict__:
            return self.enqueue(request_of(fields))
        # As enqueue() names it (printf-style formatting costs less than a format spec).
        name = fields["name"] or _names.prefix + "%08x" % next(_names.counter)  # noqa: UP031
        request: TaskRequest = _new(TaskRequest)  # request_of(fields), inline; named below once claimed
        _set_attribute(request, "__dict__", fields)
        claimed, lock, queue = self._claimed, self._lock, fields["queue"]
        lock.acquire()
        try:
            size = len(claimed)  # names.claim_locked(queue, name), inline
            claimed.add((queue, name))
            if len(claimed) == size:
                raise name_taken(queue, name)
            fields["name"] = name
            self.requests.append(request)
        finally:
            lock.release()
        return name

    def clear(self) -> None:
        """Forgets the recorded tasks and names."""
        with self._lock:
            self.requests.clear()
        self.names.clear()

    def run_all(self) -> list[TaskResponse]:
        """Runs the recorded tasks through the endpoint, in order, and forgets them.

        Tasks that these tasks enqueue are recorded anew and not run.

        Returns:
            The endpoint's response to each.
        """
        with self._lock:
            pending, self.requests = self.requests, []
        return [self.deliver(request) for request in pending]

    def __repr__(self) -> str:
        return f"RecordingTransport({len(self.requests)} recorded)"


_new = object.__new__
_set_attribute = object.__setattr__
#: The enqueue :meth:`RecordingTransport._enqueue_built` stands in for (the class's may be replaced later).
_OWN_ENQUEUE = RecordingTransport.enqueue
#: The generated task names: a random prefix per process and a counter (as the local queue's).
_names = ProcessSequence(12)
