"""The WSGI application the local queue delivers to in process.

An adapter registers its application when it is set up, so the local queue
embedded in the web process needs no configuration;
:func:`im_task.config.reset` forgets it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from im_task.errors import ConfigurationError
from im_task.state import STATE

__all__ = ["get_local_target", "register_local_target"]

#: A WSGI callable, as the local queue calls it.
WSGIApp = Callable[..., Any]


def register_local_target(app: WSGIApp | None) -> None:
    """Names the WSGI application the local queue delivers to in process.

    Adapters call this when they are set up, so the embedded queue needs no
    configuration. The last registration wins.

    Args:
        app: A WSGI callable, or None to forget the registered one.

    Raises:
        ConfigurationError: ``app`` is not callable.
    """
    if app is not None and not callable(app):
        raise ConfigurationError(f"The local target must be a WSGI callable, not {type(app).__name__}.")
    with STATE.lock:
        STATE.local_target = app


def get_local_target() -> WSGIApp | None:
    """The WSGI application an adapter registered for in-process delivery, if any."""
    return STATE.local_target
