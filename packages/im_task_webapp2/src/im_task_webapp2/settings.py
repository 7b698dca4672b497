"""Reading ``app.config["im_task"]`` into the core, registering the app with the local queue, checking its routes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from im_task.adapter_settings import read_adapter_settings
from im_task.errors import ConfigurationError
from im_task.routing import get_taskroute
from im_task.runtime import set_up_framework
from im_task_webapp2._compat import webapp2
from im_task_webapp2.methods import TaskMethods, task_route_of

__all__ = ["CONFIG_KEY", "is_set_up", "setup"]

#: The key of ``app.config`` (and of ``app.registry``) that holds the im-task settings.
CONFIG_KEY = "im_task"
_SOURCE = f"app.config[{CONFIG_KEY!r}]"
_ROUTE_SOURCE = f"{_SOURCE}['route']"
logger = logging.getLogger("im_task.webapp2")


def setup(app: Any) -> Any:
    """Connects a webapp2 application to im-task; call it once at start-up.

    It reads ``app.config["im_task"]`` into the core: a dict with the names
    :func:`im_task.configure` takes (``secret``, ``transport``,
    ``max_body_size``...) and two of this adapter's own:

    * ``route``: the task route, such as ``"/tasks"``, passed to
      :func:`im_task.set_taskroute` (tasks decorated afterwards are sent
      there); by default the current :func:`im_task.get_taskroute` is kept;
    * ``register_local_target``: whether the embedded local queue delivers
      to this app in process (``True`` by default).

    It then checks that the app's task routes (those of
    :func:`~im_task_webapp2.routes`) serve the task route, since they are
    made before ``setup`` runs; opens the task routes, and only them, to
    every HTTP method (webapp2 answers methods missing from
    ``WSGIApplication.allowed_methods`` with 501 before routing; the task
    route answers 405 with ``Allow: POST`` instead); and checks the
    configuration, so that a missing secret in production fails here rather
    than at the first task. When it refuses, the core is left as it was.

    Every key of ``app.config["im_task"]`` must be one of these, in lower
    case: an unknown key is refused with the closest known one (``'secrte'``
    ... did you mean ``'secret'``?), and a key in the wrong case with its
    right spelling, so that a typo never leaves a setting silently unset.
    Unknown ``IM_TASK_*`` environment variables are logged as warnings here,
    on the ``im_task`` logger, likewise with the closest known name.

    Settings given to :func:`im_task.configure` win over ``app.config``. When
    several applications are set up in one process, the last one's settings,
    route and local-queue registration win.

    Args:
        app: The ``webapp2.WSGIApplication``, already made with its routes and config.

    Returns:
        ``app``, so that ``app = setup(webapp2.WSGIApplication(...))`` works.

    Raises:
        ConfigurationError: ``app`` is not a webapp2 application, its
            settings are unknown, invalid or unsafe, or its task routes are
            not at the task route.

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
    read = read_adapter_settings(values, source=_SOURCE)
    _check_task_routes(app, read.route)
    set_up_framework(
        read.core,
        source=_SOURCE,
        local_target=app if read.register_local_target else None,
        route=read.route,
    )
    app.allowed_methods = TaskMethods(app.allowed_methods)
    app.registry[CONFIG_KEY] = True
    return app


def _check_task_routes(app: Any, route: str | None) -> None:
    """Refuses an app whose task routes all serve another route than the one tasks are sent to.

    An app without task routes (one that only sends tasks, or mounts
    :class:`~im_task_webapp2.TaskHandler` its own way) is not checked.
    """
    served = sorted({base for base in map(task_route_of, app.router.match_routes) if base is not None})
    expected = get_taskroute() if route is None else route
    if not served or expected in served:
        return
    where = ", ".join(served)
    if route is None:
        raise ConfigurationError(
            f"Tasks are sent to {expected}, but this app serves them at {where}: call "
            f"im_task.set_taskroute({served[0]!r}) at start-up, before your tasks are defined, "
            f"or set {_ROUTE_SOURCE} to {served[0]!r}."
        )
    raise ConfigurationError(
        f"{_ROUTE_SOURCE} sends tasks to {expected}, but this app serves them at {where} "
        f"(routes() ran before setup() set the route): make the routes with routes({expected!r}), "
        f"or call im_task.set_taskroute({expected!r}) at start-up, before routes() and your tasks."
    )


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
