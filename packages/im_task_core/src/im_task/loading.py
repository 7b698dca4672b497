"""Components named by a setting: a built-in name or ``"package.module:factory"``, loaded and made in one way.

The transport factory and the payload-store factory both resolve a setting
through :func:`load_named` and call what it names through :func:`make_named`,
so that both accept the same forms and fail with the same messages.

Example:
    >>> from im_task.loading import load_named
    >>> load_named("json:dumps", {}, kind="codec", forms="'package.module:factory'").__name__
    'dumps'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from im_task.errors import ConfigurationError

__all__ = ["load_named", "make_named"]


def load_named(name: str, builtins: Mapping[str, str], *, kind: str, forms: str, hint: str = "") -> Any:
    """What a setting's name stands for: a built-in's, or ``package.module:attribute``, imported.

    Args:
        name: The name, e.g. ``"local"`` or ``"myapp.queues:make_queue"``.
        builtins: The built-in names and the ``module:attribute`` each stands for.
        kind: What is named, for messages, e.g. ``"transport"``.
        forms: The accepted forms, for messages.
        hint: Added to an import failure's message (e.g. what to install).

    Returns:
        The attribute named (a class, a factory or an instance).

    Raises:
        ConfigurationError: The name has neither form, its module cannot be
            imported, or the module does not define the attribute.
    """
    if not isinstance(name, str):
        raise ConfigurationError(f"A {kind} name is a string of the form {forms}, not {type(name).__name__}.")
    module_name, _, attr = builtins.get(name, name).partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"The {kind} {name!r} is neither a built-in name nor of the form {forms}.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"The {kind} {name!r} cannot be imported{hint}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"The {kind} {name!r} names {attr!r}, which {module_name} does not define.") from None


def make_named(
    factory: Callable[..., Any],
    name: str,
    *args: Any,
    kind: str,
    expected: str,
    accept: Callable[[Any], bool],
    **kwargs: Any,
) -> Any:
    """Calls the factory a setting named, and checks what it made.

    Args:
        factory: What :func:`load_named` returned.
        name: The setting's name, for messages.
        *args: Arguments of the factory.
        kind: What is made, for messages, e.g. ``"transport"``.
        expected: The type it must make, for messages, e.g. ``"Transport"``.
        accept: Whether a made value is of that kind.
        **kwargs: Keyword arguments of the factory.

    Returns:
        What the factory made.

    Raises:
        ConfigurationError: The factory failed (its own ``ConfigurationError``
            passes through), or made something else.
    """
    try:
        made = factory(*args, **kwargs)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(f"The {kind} factory {name!r} failed: {exc}") from exc
    if not accept(made):
        raise ConfigurationError(f"The {kind} {name!r} gave {type(made).__name__}, not a {expected}.")
    return made
