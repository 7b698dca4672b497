"""A queue that takes every task, reused names included, and delivers it to the real endpoint when asked."""

from __future__ import annotations

from im_task.endpoints import handle_request
from im_task.transports import InProcessTransport, TaskRequest

__all__ = ["ReusingQueue"]


class ReusingQueue(InProcessTransport):
    """A queue without name deduplication: what a sender sends twice, it takes twice.

    Tasks wait in :attr:`taken` until :meth:`deliver_all` (or ``deliver``)
    hands them to :func:`im_task.endpoints.handle_request`, as a queue would.
    """

    def __init__(self) -> None:
        super().__init__(handle_request)
        #: Every request taken, in order, names reused or not.
        self.taken: list[TaskRequest] = []

    def enqueue(self, request: TaskRequest) -> str:
        """Takes ``request`` (never refusing its name); delivers nothing yet.

        Args:
            request: The task to take.

        Returns:
            The request's name, as given.
        """
        self.taken.append(request)
        return str(request.name)

    def deliver_all(self) -> list[int]:
        """Delivers every task taken so far to the endpoint, in order.

        Returns:
            The endpoint's HTTP status for each.
        """
        return [self.deliver(request).status for request in self.taken]
