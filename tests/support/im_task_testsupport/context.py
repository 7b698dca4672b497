"""What a running task knows of itself, as one dict: the context-snapshot tasks of the tests record it."""

from __future__ import annotations

from typing import Any

from im_task import (
    get_execution_count,
    get_queue_name,
    get_retry_count,
    get_task_headers,
    get_task_name,
    is_from_task_queue,
)


def task_context(header: str | None = None) -> dict[str, Any]:
    """The task context helpers' answers where this is called, by short name.

    Args:
        header: A request header to add as ``"header"`` (None when absent or outside a task).

    Returns:
        ``from_queue``, ``retry``, ``executions``, ``task``, ``queue`` (and ``header`` when asked).
    """
    seen: dict[str, Any] = {
        "from_queue": is_from_task_queue(),
        "retry": get_retry_count(),
        "executions": get_execution_count(),
        "task": get_task_name(),
        "queue": get_queue_name(),
    }
    if header is not None:
        headers = get_task_headers()
        seen["header"] = headers.get(header) if headers is not None else None
    return seen
