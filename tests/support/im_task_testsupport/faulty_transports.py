"""Transports that fail the way real queue clients do, wrapped around a working one."""

from __future__ import annotations

from im_task.errors import EnqueueError
from im_task.transports import TaskRequest, Transport

__all__ = ["AnswerLostTransport", "ResetTransport"]


class ResetTransport(Transport):
    """A queue client breaking the contract: a raw socket error escapes for its first ``failures`` sends."""

    def __init__(self, queue: Transport, failures: int = 1) -> None:
        self.queue = queue
        self.failures = failures

    def enqueue(self, request: TaskRequest) -> str | None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionResetError("connection reset by peer")
        return self.queue.enqueue(request)


class AnswerLostTransport(Transport):
    """The queue takes every task, but its answer is lost: each send reports an ``EnqueueError``."""

    def __init__(self, queue: Transport) -> None:
        self.queue = queue

    def enqueue(self, request: TaskRequest) -> str | None:
        self.queue.enqueue(request)
        raise EnqueueError("connection reset before the queue's answer arrived")
