"""Making a transport from a setting: an instance, a built-in name, or ``"package.module:factory"``.

:mod:`im_task.runtime` calls :func:`make_transport` for the transport in
force; Django's system check calls :func:`load_transport_setting` to report a
setting that cannot work, with the same messages.

Example:
    >>> from im_task.transports.factory import make_transport
    >>> make_transport("recording", data_dir=Path(".im_task"))  # doctest: +SKIP
    RecordingTransport(0 recorded)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from im_task.deadletter import DeadLetterStore
from im_task.errors import ConfigurationError
from im_task.loading import load_named, make_named
from im_task.names import QUEUE_FILE
from im_task.transports.base import Transport

__all__ = ["BUILTIN_TRANSPORTS", "load_transport_setting", "make_transport"]

#: The built-in transport names and the class each stands for.
BUILTIN_TRANSPORTS = {
    "local": "im_task.transports.local:LocalTransport",
    "immediate": "im_task.transports.immediate:ImmediateTransport",
    "recording": "im_task.transports.recording:RecordingTransport",
    "cloudtasks": "im_task.transports.cloudtasks:CloudTasksTransport",
}
_FORMS = "'local', 'immediate', 'recording', 'cloudtasks', or 'package.module:factory'"


def load_transport_setting(name: str) -> Callable[..., Any] | Transport:
    """Finds what a transport name stands for, without making a transport.

    Args:
        name: A built-in name or ``"package.module:factory"``.

    Returns:
        The class, factory or ``Transport`` instance it names.

    Raises:
        ConfigurationError: The name has neither form, or what it names cannot be imported.
    """
    found: Callable[..., Any] | Transport = load_named(name, BUILTIN_TRANSPORTS, kind="transport", forms=_FORMS)
    if not isinstance(found, Transport) and not callable(found):
        raise ConfigurationError(
            f"The transport {name!r} names a value of type {type(found).__name__}, not a Transport or a factory."
        )
    return found


def make_transport(
    setting: Transport | str | None,
    *,
    data_dir: Path,
    cloud: Mapping[str, Any] | None = None,
    dead_letters: DeadLetterStore | None = None,
) -> Transport:
    """The transport a setting asks for.

    Args:
        setting: A ``Transport`` (returned as it is), a name, or None for the
            local queue.
        data_dir: The data directory, where ``"local"`` keeps its queue file.
        cloud: The keyword arguments ``"cloudtasks"`` is made with (the Google
            Cloud settings: ``project``, ``location``, ``base_url``...); None
            values are left out.
        dead_letters: Where ``"local"`` records the tasks it gives up on by its own retry policy (the
            dead-letter store in force), or None.

    Returns:
        The transport.

    Raises:
        ConfigurationError: The name cannot be loaded, its factory failed, or
            it gave something that is not a ``Transport``.
    """
    if isinstance(setting, Transport):
        return setting
    name = "local" if setting is None else setting
    found = load_transport_setting(name)
    if isinstance(found, Transport):
        return found
    args: tuple[Any, ...] = (data_dir / QUEUE_FILE,) if name == "local" else ()
    options = {key: value for key, value in (cloud or {}).items() if value is not None} if name == "cloudtasks" else {}
    if name == "local" and dead_letters is not None:
        options["dead_letters"] = dead_letters
    transport: Transport = make_named(
        found,
        name,
        *args,
        kind="transport",
        expected="Transport",
        accept=lambda made: isinstance(made, Transport),
        **options,
    )
    return transport
