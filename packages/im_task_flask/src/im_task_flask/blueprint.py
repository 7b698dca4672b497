"""The core's endpoints as a Flask blueprint: a few lines handing each request to the core.

:func:`make_blueprint` mounts every endpoint of the core's endpoint table
(:func:`im_task.endpoints.endpoints`) in one loop, so an endpoint the core
adds is served by Flask apps without a change here.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, Response, request
from flask.blueprints import BlueprintSetupState

from im_task.endpoints import TASK_ENDPOINT, Endpoint, endpoints
from im_task.routing import normalize_taskroute
from im_task.wsgi import environ_headers

__all__ = ["BLUEPRINT_NAME", "ENDPOINT", "make_blueprint", "rule_of", "serve_endpoint"]

#: Name of the blueprint :func:`make_blueprint` returns.
BLUEPRINT_NAME = "im_task"
#: Flask endpoint of the task view inside the blueprint (each core endpoint's Flask endpoint is its name).
ENDPOINT = TASK_ENDPOINT.name
# Every method is routed to the views, so that the core answers 405 with
# ``Allow: POST`` for all of them; these are listed for Flask, which wants a
# list, and the rules are then opened to any method at registration.
_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]


def serve_endpoint(endpoint: Endpoint, **route_args: str) -> Response:
    """The one view of the blueprint: passes the request to the endpoint's handler and sends its answer.

    The body goes to the core as werkzeug's ``request.stream``, which is
    limited to the declared ``Content-Length`` (and empty without one), so the
    core reads at most ``max_body_size`` bytes and refuses a larger declared
    body before reading any of it.

    Args:
        endpoint: The core endpoint the matched rule mounts (bound by :func:`make_blueprint`).
        **route_args: The rule's variables (``subpath`` under a prefix); unused: the core reads ``request.path``.

    Returns:
        The core's response as a Flask response.
    """
    del route_args
    current: Any = request._get_current_object()  # type: ignore[attr-defined] # one proxy look-up, not five
    # werkzeug's request.headers would read the same headers from the environ, several times as slowly
    headers = environ_headers(current.environ)
    path = current.script_root + current.path  # the whole path, as the queue POSTed it (a task is bound to it)
    result = endpoint.handler(current.method, path, current.stream, headers, current.remote_addr)
    return Response(result.body, status=result.status, headers=result.headers)


def rule_of(endpoint: Endpoint, route: str | None = None) -> str:
    """The Flask URL rule of a core endpoint: ``<path>/<path:subpath>`` for a prefix, ``<path>`` otherwise.

    Args:
        endpoint: The core endpoint.
        route: The task route to serve, for endpoints under the task route; the current one when None.

    Returns:
        The rule, e.g. ``"/_ah/task/<path:subpath>"``.
    """
    path = endpoint.path(route)
    return f"{path}/<path:subpath>" if endpoint.prefix else path


def make_blueprint(route: str | None = None) -> Blueprint:
    """Makes the blueprint that serves every endpoint of the core's endpoint table.

    :class:`~im_task_flask.ImTask` registers one for you; use this to mount
    the endpoints yourself, e.g. with your own ``url_prefix``. Each endpoint
    is a rule whose Flask endpoint is the core endpoint's name (``"task"``
    for the task endpoint, served at ``<route>/<path>``).

    Args:
        route: The task route, e.g. ``"/_ah/task"``; the current
            :func:`~im_task.get_taskroute` when None. Only the path the task
            view answers at changes: call :func:`~im_task.set_taskroute` (or set
            ``IM_TASK_ROUTE``) for the URLs tasks are sent to.

    Returns:
        A blueprint named ``"im_task"`` with one rule per core endpoint, each accepting every method.

    Raises:
        ConfigurationError: If ``route`` is not a plain absolute path.
    """
    fixed = None if route is None else normalize_taskroute(route)
    mounted = endpoints()
    blueprint = Blueprint(BLUEPRINT_NAME, __name__)
    for endpoint in mounted:
        blueprint.add_url_rule(
            rule_of(endpoint, fixed),
            endpoint=endpoint.name,
            view_func=functools.partial(serve_endpoint, endpoint),
            methods=_METHODS,
            provide_automatic_options=False,
        )
    blueprint.record(functools.partial(_open_to_every_method, names=[endpoint.name for endpoint in mounted]))
    return blueprint


def _open_to_every_method(state: BlueprintSetupState, names: list[str]) -> None:
    """Lets the blueprint's rules match any method, even ones Flask does not list.

    A rule whose ``methods`` is None matches every method in werkzeug, so
    requests such as ``PROPFIND`` reach the core too and get its 405 with
    ``Allow: POST`` instead of werkzeug's list of the methods above.
    """
    for name in names:
        rules: Any = state.app.url_map.iter_rules(f"{state.name_prefix}.{state.name}.{name}".lstrip("."))
        for rule in rules:
            rule.methods = None
