"""The webapp2 request handler of the core's endpoints."""

from __future__ import annotations

from typing import Any

from im_task.wsgi import handle_environ
from im_task_webapp2._compat import webapp2
from im_task_webapp2.methods import TaskRoute
from im_task_webapp2.settings import warn_if_not_set_up

__all__ = ["TaskHandler"]


class TaskHandler(webapp2.RequestHandler):  # type: ignore[misc]
    """Hands each request of a core endpoint to that endpoint's handler in the im-task core.

    A route of :func:`im_task_webapp2.routes` names the endpoint it serves;
    on a route of your own the core picks the endpoint from the path (the
    task endpoint when no other claims it). The core verifies the request,
    runs the task and decides the answer (see the request contract in the
    documentation); this handler only translates. The body is read by the
    core from ``wsgi.input``, never more than the configured ``max_body_size``.

    The routes of :func:`im_task_webapp2.routes` send every HTTP method to
    :meth:`post`, so that the core answers other methods with 405 and
    ``Allow: POST``. Mounted on a route of your own without
    ``handler_method="post"``, webapp2 answers other methods itself, also with
    405 and ``Allow: POST``.
    """

    def post(self, *args: Any, **kwargs: Any) -> None:
        """Serves the request with the core endpoint of its route and answers as the core decides.

        Args:
            *args: Positional route arguments (ignored: the core reads the path).
            **kwargs: Named route arguments (ignored likewise).
        """
        warn_if_not_set_up(self.app)
        route = getattr(self.request, "route", None)
        handler = route.endpoint.handler if isinstance(route, TaskRoute) else None
        result = handle_environ(self.request.environ, handler=handler)
        response = self.response
        response.status = result.status_line
        response.headers = list(result.headers)
        response.body = result.body
