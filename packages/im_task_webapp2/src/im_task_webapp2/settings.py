"""Reading ``app.config["im_task"]`` into the core, and registering the app with the local queue."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from im_task.config import set_up_framework
from im_task.errors import ConfigurationError
from im_task_webapp2._compat import webapp2

__all__ = ["CONFIG_KEY", "is_set_up", "setup"]

#: The key of ``app.config`` (and of ``app.registry``) that holds the im-task settings.
CONFIG_KEY = "im_task"
_SOURCE = f'app.config["{CONFIG_KEY}"]'
logger = logging.getLogger("im_task.webapp2")


def setup(app: Any) -> Any:
    """Connects a webapp2 application to im-task; call it once at start-up.

    It reads the settings in ``app.config["im_task"]`` (a dict with the names
    :func:`im_task.configure` takes: ``secret``, ``transport``,
    ``max_body_size``...) into the core, registers ``app`` as the application
    the embedded local queue delivers to, lets ``PATCH`` requests reach the
    task route (webapp2 answers 501 to methods outside
    ``WSGIApplication.allowed_methods``; the task route answers 405 with
    ``Allow: POST`` instead), and checks the configuration, so that a missing
    secret in production fails here rather than at the first task.

    Settings given to :func:`im_task.configure` win over ``app.config``. When
    several applications are set up in one process, the last one's settings
    and local-queue registration win.

    Args:
        app: The ``webapp2.WSGIApplication``, already made with its routes and config.

    Returns:
        ``app``, so that ``app = setup(webapp2.WSGIApplication(...))`` works.

    Raises:
        ConfigurationError: ``app`` is not a webapp2 application, or its
            settings are unknown, invalid or unsafe.

    Example:
        >>> import webapp2
        >>> from im_task_webapp2 import routes, setup
        >>> app = setup(webapp2.WSGIApplication(routes(), config={"im_task": {"max_body_size": 65536}}))
    """
    if not isinstance(app, webapp2.WSGIApplication):
        raise ConfigurationError(
            f"setup() needs a webapp2.WSGIApplication, not {type(app).__name__}: "
            "make the application first, then call setup(app)."
        )
    values = app.config.get(CONFIG_KEY)
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigurationError(
            f"{_SOURCE} must be a dict of im_task settings such as {{'secret': '...'}}, not {type(values).__name__}."
        )
    set_up_framework(values, source=_SOURCE, local_target=app)
    app.allowed_methods = frozenset(app.allowed_methods | {"PATCH"})
    app.registry[CONFIG_KEY] = True
    return app


def is_set_up(app: Any) -> bool:
    """Whether :func:`setup` has been called on this webapp2 application."""
    registry = getattr(app, "registry", None)
    return isinstance(registry, dict) and registry.get(CONFIG_KEY) is True


def warn_if_not_set_up(app: Any) -> None:
    """Logs once per application when tasks are served by an app that :func:`setup` never saw."""
    registry = getattr(app, "registry", None)
    if not isinstance(registry, dict) or CONFIG_KEY in registry:
        return
    registry[CONFIG_KEY] = False
    if CONFIG_KEY in getattr(app, "config", {}):
        logger.warning("%s is ignored: call im_task_webapp2.setup(app) at start-up so that im-task reads it.", _SOURCE)
