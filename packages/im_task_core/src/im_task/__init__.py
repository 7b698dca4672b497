"""im-task: run any Python callable later, as an HTTP task, with one decorator.

The names below (all but the exceptions) are imported when first used, so
``import im_task`` costs next to nothing and an application loads only the
parts of im-task it uses.

Example:
    >>> from im_task import task
    >>> @task(queue="default")
    ... def add(a, b):
    ...     print(a + b)
    >>> # add(1, 2) enqueues the call; the queue POSTs it back to the task endpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from im_task.errors import (
    BadTransactionStateError,
    BulkEnqueueError,
    ConfigurationError,
    EnqueueError,
    Error,
    PermanentTaskFailure,
    PermissionDeniedError,
    RetryTaskException,
    SignatureError,
    SingularTaskFailure,
    TaskAlreadyExistsError,
    TaskTooLargeError,
    TransientEnqueueError,
    UnknownQueueError,
)
from im_task.lazy import lazy_names

if TYPE_CHECKING:
    from im_task.config import configure
    from im_task.context import (
        get_execution_count,
        get_queue_name,
        get_retry_count,
        get_task_headers,
        get_task_name,
        is_from_task_queue,
        log_as_retried,
    )
    from im_task.decorator import TaskFunction, TaskHandle, task
    from im_task.routing import get_taskroute, set_taskroute
    from im_task.sweeping import sweep_outbox

__version__ = "2.0.0"

__all__ = [
    "BadTransactionStateError",
    "BulkEnqueueError",
    "ConfigurationError",
    "EnqueueError",
    "Error",
    "PermanentTaskFailure",
    "PermissionDeniedError",
    "RetryTaskException",
    "SignatureError",
    "SingularTaskFailure",
    "TaskAlreadyExistsError",
    "TaskFunction",
    "TaskHandle",
    "TaskTooLargeError",
    "TransientEnqueueError",
    "UnknownQueueError",
    "configure",
    "get_execution_count",
    "get_queue_name",
    "get_retry_count",
    "get_task_headers",
    "get_task_name",
    "get_taskroute",
    "is_from_task_queue",
    "log_as_retried",
    "set_taskroute",
    "sweep_outbox",
    "task",
]

_LAZY = {
    "configure": "im_task.config",
    "get_execution_count": "im_task.context",
    "get_queue_name": "im_task.context",
    "get_retry_count": "im_task.context",
    "get_task_headers": "im_task.context",
    "get_task_name": "im_task.context",
    "is_from_task_queue": "im_task.context",
    "log_as_retried": "im_task.context",
    "get_taskroute": "im_task.routing",
    "set_taskroute": "im_task.routing",
    "sweep_outbox": "im_task.sweeping",
    "TaskFunction": "im_task.decorator",
    "TaskHandle": "im_task.decorator",
    "task": "im_task.decorator",
}


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
