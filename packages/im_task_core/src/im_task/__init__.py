"""im-task: run any Python callable later, as an HTTP task, with one decorator.

Example:
    >>> from im_task import task
    >>> @task(queue="default")
    ... def add(a, b):
    ...     print(a + b)
    >>> # add(1, 2) enqueues the call; the queue POSTs it back to the task endpoint.
"""

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
from im_task.errors import (
    BadTransactionStateError,
    ConfigurationError,
    EnqueueError,
    Error,
    PermanentTaskFailure,
    RetryTaskException,
    SignatureError,
    SingularTaskFailure,
    TaskAlreadyExistsError,
    TaskTooLargeError,
)
from im_task.routing import get_taskroute, set_taskroute
from im_task.task import TaskFunction, TaskHandle, task

__version__ = "2.0.0"

__all__ = [
    "BadTransactionStateError",
    "ConfigurationError",
    "EnqueueError",
    "Error",
    "PermanentTaskFailure",
    "RetryTaskException",
    "SignatureError",
    "SingularTaskFailure",
    "TaskAlreadyExistsError",
    "TaskFunction",
    "TaskHandle",
    "TaskTooLargeError",
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
    "task",
]
