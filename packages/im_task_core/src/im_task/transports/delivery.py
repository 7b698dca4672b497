"""Running a task request through the endpoint in this process, as a queue would deliver it."""

from __future__ import annotations

from im_task.executor import TaskResponse, handle_request
from im_task.headers import APPENGINE, forwardable_headers, make_task_headers
from im_task.transports.base import TaskRequest

__all__ = ["run_in_process"]


def run_in_process(request: TaskRequest, *, retry_count: int = 0, family: str = APPENGINE) -> TaskResponse:
    """Delivers a task to the endpoint directly, with the headers a queue sends.

    Headers the queue sets (``X-AppEngine-*`` and the like) are dropped from
    the request's own, as a queue would.

    Args:
        request: The task; it must have a name.
        retry_count: Attempts made before this one.
        family: Header family to send.

    Returns:
        The endpoint's response.
    """
    headers = {
        **forwardable_headers(request.headers),
        **make_task_headers(
            queue_name=request.queue,
            task_name=request.name or "unnamed",
            retry_count=retry_count,
            execution_count=retry_count,
            eta=request.schedule_time,
            family=family,
        ),
    }
    return handle_request("POST", request.url, request.body, headers, "127.0.0.1")
