"""The embedded local queue: durable in SQLite, delivering tasks like Google Cloud Tasks.

``LocalTransport`` is the default transport outside App Engine. Its modules:
``store`` (the SQLite task table), ``delivery`` (POSTing one task, in process
or over HTTP), ``workers`` (the thread pool), ``dispatcher`` (claiming,
delivering, retrying) and ``transport`` (the public class).
"""

from __future__ import annotations

from im_task.transports.local.models import STATES, QueueLimits, QueueStats, TaskDetail, TaskInfo, TaskState
from im_task.transports.local.transport import LocalTransport

__all__ = ["STATES", "LocalTransport", "QueueLimits", "QueueStats", "TaskDetail", "TaskInfo", "TaskState"]
