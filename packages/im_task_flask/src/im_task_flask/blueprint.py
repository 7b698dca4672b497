"""The task endpoint as a Flask blueprint: a few lines handing each request to the core."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request
from flask.blueprints import BlueprintSetupState

from im_task.executor import handle_request
from im_task.headers import Headers
from im_task.routing import get_taskroute, normalize_taskroute

__all__ = ["BLUEPRINT_NAME", "ENDPOINT", "make_blueprint"]

#: Name of the blueprint :func:`make_blueprint` returns.
BLUEPRINT_NAME = "im_task"
#: Endpoint of the task view inside the blueprint.
ENDPOINT = "task"
# Every method is routed to the view, so that the core answers 405 with
# ``Allow: POST`` for all of them; these are listed for Flask, which wants a
# list, and the rule is then opened to any method at registration.
_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]


def serve_task(subpath: str) -> Response:
    """The task view: passes the request to the core and sends its answer.

    The body goes to the core as werkzeug's ``request.stream``, which is
    limited to the declared ``Content-Length`` (and empty without one), so the
    core reads at most ``max_body_size`` bytes and refuses a larger declared
    body before reading any of it.

    Args:
        subpath: The part of the path under the task route (only for logs).

    Returns:
        The core's response as a Flask response.
    """
    del subpath  # any path under the route is a task; the core logs request.path
    headers = Headers(request.headers.items())
    result = handle_request(request.method, request.path, request.stream, headers, request.remote_addr)
    return Response(result.body, status=result.status, headers=result.headers)


def make_blueprint(route: str | None = None) -> Blueprint:
    """Makes the blueprint that serves tasks at ``<route>/<path>``.

    :class:`~im_task_flask.ImTask` registers one for you; use this to mount
    the endpoint yourself, e.g. with your own ``url_prefix`` or name.

    Args:
        route: The task route, e.g. ``"/_ah/task"``; the current
            :func:`~im_task.get_taskroute` when None. Only the path the view
            answers at changes: call :func:`~im_task.set_taskroute` (or set
            ``IM_TASK_ROUTE``) for the URLs tasks are sent to.

    Returns:
        A blueprint named ``"im_task"`` with one view accepting every method.

    Raises:
        ConfigurationError: If ``route`` is not a plain absolute path.
    """
    route = get_taskroute() if route is None else normalize_taskroute(route)
    blueprint = Blueprint(BLUEPRINT_NAME, __name__)
    blueprint.add_url_rule(
        f"{route}/<path:subpath>",
        endpoint=ENDPOINT,
        view_func=serve_task,
        methods=_METHODS,
        provide_automatic_options=False,
    )
    blueprint.record(_open_to_every_method)
    return blueprint


def _open_to_every_method(state: BlueprintSetupState) -> None:
    """Lets the task rule match any method, even ones Flask does not list.

    A rule whose ``methods`` is None matches every method in werkzeug, so
    requests such as ``PROPFIND`` reach the core too and get its 405 with
    ``Allow: POST`` instead of werkzeug's list of the methods above.
    """
    endpoint = f"{state.name_prefix}.{state.name}.{ENDPOINT}".lstrip(".")
    rules: Any = state.app.url_map.iter_rules(endpoint)
    for rule in rules:
        rule.methods = None
