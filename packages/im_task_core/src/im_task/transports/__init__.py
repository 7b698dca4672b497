"""Queue backends: the :class:`Transport` contract and its implementations.

* :class:`LocalTransport`: the embedded default, a durable SQLite queue that
  delivers like Cloud Tasks.
* :class:`ImmediateTransport`: runs each task at once through the whole path.
* :class:`RecordingTransport`: records tasks for assertions.
"""

from im_task.transports.base import TaskRequest, Transport
from im_task.transports.immediate import ImmediateTransport
from im_task.transports.local import LocalTransport
from im_task.transports.recording import RecordingTransport

__all__ = ["ImmediateTransport", "LocalTransport", "RecordingTransport", "TaskRequest", "Transport"]
