"""The endpoint table: every HTTP endpoint the core serves, for adapters to mount in one loop.

The table holds the task endpoint, under the task route, and App Engine
``deferred``'s endpoints: ``/_ah/queue/deferred`` and every
``/_ah/queue/<queue>`` (what ``defer(..., _url=None)`` posts to), and the
outbox sweep for cron, ``/_ah/im-task/sweep``. An adapter
mounts each :class:`Endpoint` of :func:`endpoints` (a path, or every path
under a prefix, to a handler taking ``(method, path, body, headers,
remote_addr)``), so an endpoint added here reaches every framework without
touching an adapter.

Example:
    >>> from im_task.endpoints import endpoints
    >>> [(e.name, e.path()) for e in endpoints()]  # doctest: +NORMALIZE_WHITESPACE
    [('task', '/_ah/task'), ('deferred', '/_ah/queue/deferred'), ('deferred_queue', '/_ah/queue'),
     ('sweep', '/_ah/im-task/sweep')]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO

from im_task import executor
from im_task.response import Handler, TaskResponse
from im_task.routing import get_taskroute, normalize_taskroute
from im_task.state import STATE
from im_task.sweeping import handle_sweep_request

__all__ = [
    "DEFERRED_ENDPOINT",
    "DEFERRED_QUEUE_ENDPOINT",
    "DEFERRED_QUEUE_ROUTE",
    "DEFERRED_URL",
    "ENDPOINTS",
    "SWEEP_ENDPOINT",
    "SWEEP_PATH",
    "TASK_ENDPOINT",
    "Endpoint",
    "endpoints",
    "find_endpoint",
    "handle_request",
]

#: App Engine ``deferred``'s default URL (``defer(..., _url=...)``).
DEFERRED_URL = "/_ah/queue/deferred"
#: The route of App Engine's per-queue URLs, ``/_ah/queue/<queue>`` (``defer(..., _url=None)``).
DEFERRED_QUEUE_ROUTE = "/_ah/queue"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the core.

    Attributes:
        name: Its name, e.g. ``"task"``; adapters name their routes after it.
        handler: What serves it.
        default_path: The path it is served at, read when mounted or matched
            (the task route can change at start-up).
        prefix: Whether the paths under ``path()`` are served (``<path>/<something>``) rather than
            ``path()`` itself. A prefix endpoint does not serve its bare path, nor ``<path>/``.
        follows_taskroute: Whether it is served under the task route, which an adapter may fix.
    """

    name: str
    handler: Handler
    default_path: Callable[[], str]
    prefix: bool = True
    follows_taskroute: bool = False

    def path(self, taskroute: str | None = None) -> str:
        """The path to mount it at.

        Args:
            taskroute: The task route the adapter serves, when it fixes one.
        """
        if taskroute is not None and self.follows_taskroute:
            return normalize_taskroute(taskroute)
        return self.default_path()

    def matches(self, path: str, taskroute: str | None = None) -> bool:
        """Whether a request path is this endpoint's."""
        base = self.path(taskroute)
        if self.prefix:
            return path.startswith(base + "/") and len(path) > len(base) + 1
        return path == base


#: The task endpoint: every path under the task route.
TASK_ENDPOINT = Endpoint("task", executor.handle_request, get_taskroute, prefix=True, follows_taskroute=True)


def _deferred_url() -> str:
    return DEFERRED_URL


def _deferred_queue_route() -> str:
    return DEFERRED_QUEUE_ROUTE


#: App Engine ``deferred``'s endpoint, ``/_ah/queue/deferred`` (see :mod:`im_task.deferred`).
DEFERRED_ENDPOINT = Endpoint("deferred", executor.handle_deferred_request, _deferred_url, prefix=False)
#: App Engine's per-queue URLs, ``/_ah/queue/<queue>``, served as the deferred endpoint.
DEFERRED_QUEUE_ENDPOINT = Endpoint(
    "deferred_queue", executor.handle_deferred_request, _deferred_queue_route, prefix=True
)
#: The path of the outbox sweep, for cron (see :mod:`im_task.sweeping`).
SWEEP_PATH = "/_ah/im-task/sweep"


def _sweep_path() -> str:
    return SWEEP_PATH


#: The outbox sweep, for cron: ``GET /_ah/im-task/sweep`` (App Engine's ``X-Appengine-Cron`` in production).
SWEEP_ENDPOINT = Endpoint("sweep", handle_sweep_request, _sweep_path, prefix=False)
#: Every endpoint of the core, in the order adapters mount them (the first match wins).
ENDPOINTS: list[Endpoint] = [TASK_ENDPOINT, DEFERRED_ENDPOINT, DEFERRED_QUEUE_ENDPOINT, SWEEP_ENDPOINT]


def endpoints() -> tuple[Endpoint, ...]:
    """The endpoints adapters mount."""
    return tuple(ENDPOINTS)


def find_endpoint(path: str, taskroute: str | None = None) -> Endpoint | None:
    """The endpoint serving a path, or None."""
    return next((endpoint for endpoint in ENDPOINTS if endpoint.matches(path, taskroute)), None)


def handle_request(
    method: str,
    path: str,
    body: bytes | IO[bytes],
    headers: Mapping[str, str],
    remote_addr: str | None = None,
) -> TaskResponse:
    """Serves a request in process, as an application mounting every endpoint would.

    In-process transports are given this handler. A path no other endpoint
    claims goes to the task endpoint: a task may set its own ``url``, and
    in-process delivery has no URL map to check it against.

    Args:
        method: The HTTP method.
        path: The request path.
        body: The body.
        headers: The request headers.
        remote_addr: The caller's address.

    Returns:
        The endpoint's response.
    """
    endpoint = find_endpoint(path) or TASK_ENDPOINT
    return endpoint.handler(method, path, body, headers, remote_addr)


# In-process transports made without a handler deliver to this process's endpoints.
STATE.endpoint_handler = handle_request
