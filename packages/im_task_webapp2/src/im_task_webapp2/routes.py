"""The webapp2 routes of the core's endpoints: one per endpoint of the endpoint table."""

from __future__ import annotations

from typing import Any

from im_task.endpoints import TASK_ENDPOINT, Endpoint, endpoints
from im_task.errors import ConfigurationError
from im_task.routing import normalize_taskroute
from im_task_webapp2.handler import TaskHandler
from im_task_webapp2.methods import PATH_PATTERN, TaskRoute

__all__ = ["ROUTE_NAME", "addrouteforwebapp2", "route_name", "routes"]

#: The name of the task endpoint's route, for ``webapp2.uri_for``.
ROUTE_NAME = "im_task"


def route_name(endpoint: Endpoint) -> str:
    """The webapp2 route name of a core endpoint: :data:`ROUTE_NAME` for the task endpoint, ``im_task.<name>`` else.

    Args:
        endpoint: The core endpoint.

    Returns:
        The name, for ``webapp2.uri_for``.
    """
    return ROUTE_NAME if endpoint.name == TASK_ENDPOINT.name else f"{ROUTE_NAME}.{endpoint.name}"


def routes(route: str | None = None) -> list[Any]:
    """The ``webapp2.Route`` objects that serve the core's endpoints, to add to your application.

    There is one route per endpoint of the core's endpoint table
    (:func:`im_task.endpoints.endpoints`), in its order: the task endpoint
    matches every path under the task route, at any depth; an endpoint with
    an exact path matches that path only. Every route takes every HTTP method
    (once :func:`~im_task_webapp2.setup` has opened them to methods webapp2
    does not list), so that the core answers each request as the request
    contract says (405 with ``Allow: POST`` for methods other than POST).

    Args:
        route: The task route, such as ``"/tasks"``; by default the current
            :func:`im_task.get_taskroute`, so call :func:`im_task.set_taskroute`
            first if you change it. :func:`~im_task_webapp2.setup` refuses an
            app whose task routes are not where tasks are sent.

    Returns:
        The routes, in a new list.

    Raises:
        ConfigurationError: ``route`` is not an absolute path.

    Example:
        >>> import webapp2
        >>> from im_task_webapp2 import routes, setup
        >>> app = setup(webapp2.WSGIApplication([*routes(), ("/", webapp2.RequestHandler)]))
    """
    fixed = None if route is None else normalize_taskroute(route)
    return [
        TaskRoute(
            endpoint.path(fixed) + (PATH_PATTERN if endpoint.prefix else ""),
            handler=TaskHandler,
            name=route_name(endpoint),
            handler_method="post",
            endpoint=endpoint,
        )
        for endpoint in endpoints()
    ]


def addrouteforwebapp2(routes_list: list[Any]) -> None:
    """Appends the task routes to a list of webapp2 routes, as the old ``im_task_webapp2`` did.

    Args:
        routes_list: The routes you will give to ``webapp2.WSGIApplication``; changed in place.

    Raises:
        ConfigurationError: ``routes_list`` is not a list.

    Example:
        >>> import webapp2
        >>> from im_task_webapp2 import addrouteforwebapp2, setup
        >>> app_routes = []
        >>> addrouteforwebapp2(app_routes)
        >>> app = setup(webapp2.WSGIApplication(app_routes))
    """
    if not isinstance(routes_list, list):
        raise ConfigurationError(
            f"addrouteforwebapp2() appends to a list of routes, not a {type(routes_list).__name__}; "
            "pass the list you give to webapp2.WSGIApplication, or use routes()."
        )
    routes_list.extend(routes())
