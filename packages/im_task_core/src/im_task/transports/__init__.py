"""Queue backends: the :class:`Transport` contract and its implementations.

* :class:`LocalTransport`: the embedded default, a durable SQLite queue that
  delivers like Cloud Tasks.
* :class:`ImmediateTransport`: runs each task at once through the whole path.
* :class:`RecordingTransport`: records tasks for assertions.
* :class:`CloudTasksTransport`: Google Cloud Tasks (``pip install 'im-task[gcp]'``).

Each is imported when first named, so an application whose transport is
another one never loads the local queue (nor sqlite3 and http.client), and
google-cloud-tasks is loaded when the Cloud Tasks transport sends its first task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from im_task.lazy import lazy_names
from im_task.transports.base import TaskRequest, Transport

if TYPE_CHECKING:
    from im_task.transports.cloudtasks import CloudTasksTransport
    from im_task.transports.immediate import ImmediateTransport
    from im_task.transports.inprocess import InProcessTransport
    from im_task.transports.local import LocalTransport
    from im_task.transports.recording import RecordingTransport

__all__ = [
    "CloudTasksTransport",
    "ImmediateTransport",
    "InProcessTransport",
    "LocalTransport",
    "RecordingTransport",
    "TaskRequest",
    "Transport",
]

_LAZY = {
    "CloudTasksTransport": "im_task.transports.cloudtasks",
    "ImmediateTransport": "im_task.transports.immediate",
    "InProcessTransport": "im_task.transports.inprocess",
    "LocalTransport": "im_task.transports.local",
    "RecordingTransport": "im_task.transports.recording",
}


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
