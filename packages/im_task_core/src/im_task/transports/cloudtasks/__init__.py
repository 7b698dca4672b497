"""The Google Cloud Tasks transport (``pip install 'im-task[gcp]'``).

* :mod:`~im_task.transports.cloudtasks.transport`: :class:`CloudTasksTransport` and its retry policy;
* :mod:`~im_task.transports.cloudtasks.building`: a ``TaskRequest`` as a ``CreateTaskRequest`` (targets,
  routing, OIDC, ``retry_config``);
* :mod:`~im_task.transports.cloudtasks.errors`: what a failure means;
* :mod:`~im_task.transports.cloudtasks.clients`: one client per process, dropped on fork.

google-cloud-tasks (and gRPC) are imported when the first task is sent, not
when this package is.
"""

from __future__ import annotations

from im_task.transports.cloudtasks.building import AppEngineRouting, app_engine_target
from im_task.transports.cloudtasks.transport import CloudTasksTransport, EnqueueRetry

__all__ = ["AppEngineRouting", "CloudTasksTransport", "EnqueueRetry", "app_engine_target"]
