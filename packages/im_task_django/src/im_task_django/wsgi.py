"""The project's WSGI application, loaded when first called, as the local queue's target."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["ProjectWSGIApplication", "delivery_host", "project_wsgi_application"]

#: The environ key the local queue sets on its in-process deliveries (im_task.transports.local.delivery).
_LOCAL_DELIVERY_KEY = "im_task.local_delivery"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ProjectWSGIApplication:
    """A WSGI callable standing for the project's own WSGI application.

    The application named by ``settings.WSGI_APPLICATION`` (Django's default
    handler when that is None) is loaded on the first call, not when the
    app is ready: the project's ``wsgi`` module may import code that is not
    ready yet at that time. The local queue delivers tasks to it in process,
    so ``runserver`` and ``im_task_worker`` need no target configured.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app: WSGIApp | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Serves one request with the project's application; a local-queue delivery gets an allowed ``Host``."""
        if environ.get(_LOCAL_DELIVERY_KEY):
            host = delivery_host()
            environ["HTTP_HOST"] = environ["SERVER_NAME"] = host
        return self.load()(environ, start_response)

    def load(self) -> WSGIApp:
        """The project's WSGI application, loading it on first use.

        Raises:
            django.core.exceptions.ImproperlyConfigured: ``WSGI_APPLICATION``
                cannot be imported.
        """
        app = self._app
        if app is None:
            with self._lock:
                if self._app is None:
                    from django.core.servers.basehttp import get_internal_wsgi_application

                    self._app = get_internal_wsgi_application()
                app = self._app
        return app

    def forget(self) -> None:
        """Drops the loaded application, so the next call loads it again."""
        with self._lock:
            self._app = None

    def __repr__(self) -> str:
        return "<ProjectWSGIApplication settings.WSGI_APPLICATION>"


def delivery_host() -> str:
    """The ``Host`` of in-process task deliveries: ``localhost`` if ``ALLOWED_HOSTS`` accepts it, else one it does.

    ``"*"`` and ``".example.com"`` give ``localhost`` and ``example.com``. With
    ``DEBUG`` and no ``ALLOWED_HOSTS``, Django accepts ``localhost``.
    """
    from django.conf import settings
    from django.http.request import validate_host

    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    candidates = ["localhost", "127.0.0.1", *(pattern.lstrip(".") for pattern in allowed)]
    return next((host for host in candidates if host and validate_host(host, allowed)), "localhost")


#: The instance the app registers with :func:`im_task.local_target.register_local_target`.
project_wsgi_application = ProjectWSGIApplication()
