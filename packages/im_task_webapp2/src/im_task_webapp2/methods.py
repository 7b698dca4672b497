"""Letting every HTTP method reach the task routes, and only them.

webapp2 answers a method missing from ``WSGIApplication.allowed_methods``
(``PATCH``, ``PROPFIND``, ``FOO``...) with 501 before routing. The request
contract wants 405 with ``Allow: POST`` from the task route for every method
but POST, so :func:`~im_task_webapp2.setup` replaces the app's
``allowed_methods`` with a :class:`TaskMethods`: the same methods, plus any
method when the request is for a :class:`TaskRoute`.

Only task routes are opened. webapp2 calls the handler method named after
the request method (``FOO`` calls ``handler.foo()``), so admitting every
method on every route would let a request call any method of any handler;
the task routes send every method to ``TaskHandler.post``, which the core
answers.
"""

from __future__ import annotations

from typing import Any

from im_task.endpoints import TASK_ENDPOINT, Endpoint
from im_task_webapp2._compat import webapp2

__all__ = ["PATH_PATTERN", "TaskMethods", "TaskRoute", "task_route_of"]

#: What :func:`~im_task_webapp2.routes` appends to a prefix endpoint's path to match every path under it.
PATH_PATTERN = "/<path:.+>"


class TaskRoute(webapp2.Route):  # type: ignore[misc]
    """A ``webapp2.Route`` made by :func:`~im_task_webapp2.routes`, which serves one endpoint of the core.

    It is a ``webapp2.Route`` that knows the core endpoint it serves, which
    :class:`~im_task_webapp2.TaskHandler` hands its requests to; its class
    marks it as the only kind of route :class:`TaskMethods` opens to every method.

    Args:
        *args: As ``webapp2.Route``.
        endpoint: The core endpoint served (the task endpoint by default).
        **kwargs: As ``webapp2.Route``.
    """

    def __init__(self, *args: Any, endpoint: Endpoint = TASK_ENDPOINT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.endpoint = endpoint


def task_route_of(route: Any) -> str | None:
    """The task route a router entry serves, such as ``"/_ah/task"``, or None if it does not serve the task route."""
    template = getattr(route, "template", None)
    if not isinstance(route, TaskRoute) or not isinstance(template, str) or not route.endpoint.follows_taskroute:
        return None
    if route.endpoint.prefix:
        template = template.removesuffix(PATH_PATTERN)
    return template or "/"


class TaskMethods(frozenset[str]):
    """``WSGIApplication.allowed_methods`` that also admits any method on a task route.

    Iterating it gives the methods it was made from, as before, so webapp2's
    ``Allow`` header for the app's other routes is unchanged; only the
    membership test webapp2 runs before routing is widened, for the requests
    a :class:`TaskRoute` matches.

    Example:
        >>> import webapp2
        >>> app = webapp2.WSGIApplication()
        >>> app.allowed_methods = TaskMethods(app.allowed_methods)
    """

    __slots__ = ()

    def __contains__(self, method: object) -> bool:
        """Whether webapp2 lets ``method`` through: a listed method, or any method for a task route."""
        return frozenset.__contains__(self, method) or _request_is_for_a_task_route()


def _request_is_for_a_task_route() -> bool:
    """Whether webapp2's current request matches a :class:`TaskRoute` of its application's router."""
    try:
        request = webapp2.get_request()
    except AssertionError:  # asked outside a request
        return False
    app = getattr(request, "app", None)
    if request is None or app is None:
        return False
    try:
        match = app.router.match(request)
    except webapp2.exc.HTTPException:  # no route, or a route refusing the method: webapp2 answers as usual
        return False
    return bool(match) and isinstance(match[0], TaskRoute)
