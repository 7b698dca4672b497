"""The entry point of the old ``im_task_flask`` package, for code written for it."""

from __future__ import annotations

from flask import Flask

from im_task_flask.extension import ImTask, ImTaskState

__all__ = ["setuptasksforflask"]


def setuptasksforflask(app: Flask) -> ImTaskState:
    """Sets up ``app`` to serve tasks, as the old ``im_task_flask`` did.

    The same as ``ImTask(app)``: it registers the task route (call
    :func:`~im_task.set_taskroute` first to change it) and the rest of what
    :class:`~im_task_flask.ImTask` does. New code should use ``ImTask``.

    Args:
        app: The Flask application.

    Returns:
        The state stored in ``app.extensions["im_task"]``.

    Raises:
        ConfigurationError: As :meth:`ImTask.init_app`.
    """
    return ImTask().init_app(app)
