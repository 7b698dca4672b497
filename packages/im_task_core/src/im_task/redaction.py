"""Secrets hidden in what settings show: the ``repr`` of objects that hold settings, and messages.

A secret never reaches a log or a traceback through a ``repr``: :func:`redact`
hides the ``secret`` of settings by name, :func:`repr_without_secrets` the
secret fields of a dataclass (the settings an adapter keeps, for instance).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

__all__ = ["HIDDEN", "redact", "repr_without_secrets"]


class _Hidden:
    """Stands for a secret in a ``repr``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<hidden>"


#: What :func:`redact` and :func:`repr_without_secrets` show instead of a secret.
HIDDEN: Any = _Hidden()


def redact(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of settings by name with the secret hidden, for a ``repr`` or a message.

    Args:
        values: Settings by their :func:`~im_task.configure` names.

    Returns:
        The same settings, ``secret`` shown as ``<hidden>``.

    Raises:
        TypeError: ``values`` is not a mapping.

    Example:
        >>> redact({"secret": "3f9c2b7e1d0a8c4f6b5e2d9a7c1f3e8b", "default_queue": "mail"})
        {'secret': <hidden>, 'default_queue': 'mail'}
    """
    if not isinstance(values, Mapping):
        raise TypeError(f"redact() takes a mapping of settings, not {type(values).__name__}.")
    return {name: HIDDEN if name == "secret" else value for name, value in values.items()}


def repr_without_secrets(obj: Any) -> str:
    """The ``repr`` a dataclass would have, with every secret hidden: for objects that hold settings.

    A field named ``secret`` or ``secrets`` shows ``<hidden>``; a field that
    is a mapping of settings shows its ``secret`` as ``<hidden>`` (see :func:`redact`).

    Args:
        obj: A dataclass instance.

    Returns:
        ``ClassName(field=value, ...)``, for the fields shown in a ``repr``.

    Raises:
        TypeError: ``obj`` is not a dataclass instance.
    """
    parts = []
    for item in fields(obj):
        if not item.repr:
            continue
        value = getattr(obj, item.name)
        if item.name in ("secret", "secrets"):
            value = HIDDEN
        elif isinstance(value, Mapping):
            value = redact(value)
        parts.append(f"{item.name}={value!r}")
    return f"{type(obj).__qualname__}({', '.join(parts)})"
