"""A plain WSGI application serving every endpoint of the core, for any WSGI framework."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

from im_task import endpoints
from im_task.endpoints import Endpoint
from im_task.headers import Headers
from im_task.response import Handler, TaskResponse
from im_task.routing import get_taskroute, normalize_taskroute

__all__ = ["TaskWSGIApp", "environ_headers", "handle_environ", "request_path", "send", "wsgi_body"]

StartResponse = Callable[..., Any]


def environ_headers(environ: Mapping[str, Any]) -> Headers:
    """The request headers of a WSGI environ, as a case-insensitive mapping."""
    names = _header_names
    entries = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            lowered, name = names.get(key) or _header_name(key)
            entries[lowered] = (name, value)
    for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
        value = environ.get(key)
        if value:
            entries[name.lower()] = (name, value)
    return Headers._from_entries(entries)


def _header_name(key: str) -> tuple[str, str]:
    """An environ key's header name in lower case and as sent (``X-Appengine-Queuename``), kept for next time.

    The same few names come with every request; an environ of strange names costs the
    conversion each time rather than memory: at most :data:`_KEPT_NAMES` are kept.
    """
    name = key[5:].replace("_", "-").title()
    names = (name.lower(), name)
    if len(_header_names) < _KEPT_NAMES:
        _header_names[key] = names
    return names


#: Header names by environ key, as :func:`_header_name` made them (see :data:`_KEPT_NAMES`).
_header_names: dict[str, tuple[str, str]] = {}
#: How many header names :func:`_header_name` keeps.
_KEPT_NAMES = 512


class TaskWSGIApp:
    """Serves every endpoint of the core's endpoint table; anything else is 404.

    The endpoints are those of :func:`im_task.endpoints.endpoints` when the
    app is made: the task endpoint under the task route (every path below
    it), and any other endpoint at its path (every path below it too when it
    is a prefix). Mount it with any WSGI framework or server, or wrap another
    app with ``fallback`` so that the core's paths go here and the rest to your app.

    Args:
        route: The task route; the current :func:`~im_task.get_taskroute` by default.
        fallback: WSGI app for the paths no endpoint serves; a plain 404 if None.

    Raises:
        ConfigurationError: ``route`` is not a plain absolute path.
    """

    def __init__(self, route: str | None = None, fallback: Callable[..., Iterable[bytes]] | None = None) -> None:
        self.route = get_taskroute() if route is None else normalize_taskroute(route)
        self.fallback = fallback
        self.endpoints: tuple[Endpoint, ...] = endpoints.endpoints()
        # Each endpoint's path, found once (the route is fixed; the other paths are constants), unless an
        # endpoint matches paths its own way
        plain = all(type(endpoint).matches is Endpoint.matches for endpoint in self.endpoints)
        self._mounts = (
            tuple((endpoint, endpoint.path(self.route), endpoint.prefix) for endpoint in self.endpoints)
            if plain
            else None
        )

    def endpoint_for(self, path: str) -> Endpoint | None:
        """The endpoint serving a request path, or None (the first in the table's order wins).

        A prefix endpoint serves the paths below its path (``<path>/<something>``),
        as the framework adapters mount it; an exact endpoint serves its path only
        (see :meth:`Endpoint.matches <im_task.endpoints.Endpoint.matches>`).
        """
        if self._mounts is None:
            return next((endpoint for endpoint in self.endpoints if endpoint.matches(path, self.route)), None)
        for endpoint, base, prefix in self._mounts:
            if (len(path) > len(base) + 1 and path.startswith(base + "/")) if prefix else path == base:
                return endpoint
        return None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serves one WSGI request."""
        path = request_path(environ)
        endpoint = self.endpoint_for(path)
        if endpoint is None:
            if self.fallback is not None:
                return self.fallback(environ, start_response)
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not Found\n"]
        return send(handle_environ(environ, path, endpoint.handler), start_response)


def handle_environ(environ: Mapping[str, Any], path: str | None = None, handler: Handler | None = None) -> TaskResponse:
    """Runs an endpoint's handler on a WSGI request; adapters with a WSGI environ call this.

    Args:
        environ: The WSGI environ.
        path: The request path, if the framework knows it better than the environ.
        handler: The handler of the endpoint the request was routed to; by
            default the endpoint the core finds for the path (the task
            endpoint when none claims it, see :func:`im_task.endpoints.handle_request`).

    Returns:
        The handler's response.
    """
    serve = endpoints.handle_request if handler is None else handler
    return serve(
        environ.get("REQUEST_METHOD", "GET"),
        path or request_path(environ),
        wsgi_body(environ),
        environ_headers(environ),
        environ.get("REMOTE_ADDR"),
    )


def request_path(environ: Mapping[str, Any]) -> str:
    """The request's whole path as text: ``SCRIPT_NAME`` + ``PATH_INFO``, decoded as UTF-8.

    PEP 3333 gives both as the bytes of the URL (percent-decoded once) read as
    latin-1; a task's path is bound to its envelope as UTF-8 text, as
    werkzeug and Django read it. Bytes that are no UTF-8 become lone
    surrogates (``surrogateescape``), so no other spelling of a path matches it.
    """
    raw = str(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
    try:
        return raw.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # not a PEP 3333 environ: already text
        return raw


def wsgi_body(environ: Mapping[str, Any]) -> IO[bytes] | bytes:
    """The request body stream of a WSGI environ, safe to read up to its Content-Length.

    PEP 3333: without ``CONTENT_LENGTH`` there is no body (unless the server
    says the input is terminated); reading ``wsgi.input`` anyway blocks until
    the client closes the connection.
    """
    sized = environ.get("CONTENT_LENGTH") or environ.get("wsgi.input_terminated")
    return environ["wsgi.input"] if sized else b""


def send(response: TaskResponse, start_response: StartResponse) -> list[bytes]:
    """Sends a task response through a WSGI ``start_response``."""
    start_response(response.status_line, [*response.headers, ("Content-Length", str(len(response.body)))])
    return [response.body]
