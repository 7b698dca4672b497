"""The task route and the URL of each task."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from im_task.errors import ConfigurationError
from im_task.state import DEFAULT_TASKROUTE, STATE

__all__ = ["DEFAULT_TASKROUTE", "get_taskroute", "normalize_taskroute", "set_taskroute", "task_path"]

_ROUTE = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+")


def set_taskroute(route: str) -> None:
    """Changes the route under which tasks are served, e.g. ``"/tasks"``.

    Call it at start-up, before decorating: tasks and routes made afterwards
    use it. Case is kept as given.

    Args:
        route: An absolute path; a trailing slash is dropped.

    Raises:
        ConfigurationError: If the route is not a plain absolute path.
    """
    candidate = normalize_taskroute(route)
    with STATE.lock:
        STATE.taskroute = candidate


def normalize_taskroute(route: object) -> str:
    """Checks a task route and returns it as ``/a/b``, without a trailing slash.

    Adapters that mount the endpoint at a route of their own use this, so
    every adapter accepts exactly the routes :func:`set_taskroute` does.

    Args:
        route: The route, e.g. ``"/_ah/task"`` or ``"tasks/"``.

    Returns:
        The route with one leading slash and no trailing slash.

    Raises:
        ConfigurationError: If the route is not a string, or not a plain path.
    """
    if not isinstance(route, str):
        raise ConfigurationError(f"The task route must be a string such as '/_ah/task', not {type(route).__name__}.")
    candidate = "/" + route.strip("/")
    if not _ROUTE.fullmatch(candidate):
        raise ConfigurationError(f"The task route must be an absolute path such as '/_ah/task', not {route!r}.")
    return candidate


def get_taskroute() -> str:
    """The route under which tasks are served (``/_ah/task`` by default)."""
    return STATE.taskroute


def task_path(func: Any, logname: str | None = None) -> str:
    """The readable part of a task's URL: ``<module>/<function>``.

    Nested functions keep their outer names (``module/outer/inner``); lambdas
    read ``lambda``. The task's envelope is bound to its URL: the endpoint
    runs it under that path only (see :mod:`im_task.envelope`).

    Args:
        func: The callable.
        logname: A name to use instead, as given in the task options.

    Returns:
        The path, URL-quoted, without a leading slash.
    """
    if logname:
        return quote(logname.strip("/"), safe="/")
    target = getattr(func, "__func__", func)
    module = getattr(target, "__module__", None) or type(target).__module__
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    parts = [part.strip("<>") for part in qualname.split(".") if part != "<locals>"]
    return quote(f"{module}/{'/'.join(parts)}", safe="/")
