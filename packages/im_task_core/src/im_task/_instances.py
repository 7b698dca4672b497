"""Frozen dataclass instances made at a fraction of their ``__init__``'s cost, for the core's hot paths.

Internal to the core (not part of im-task's API): :func:`instance_of` checks
nothing, so only the core calls it, with fields it made and checked.

A frozen dataclass's ``__init__`` sets each field through
``object.__setattr__``; an enqueue and a task request each make several such
instances (the request, the handle, the binding, the task headers, the
response). :func:`instance_of` gives a new instance its fields as its
``__dict__`` in one step instead. It checks nothing: use it only for fields
the core made and checked itself, naming every field, as the dataclass's
``__init__`` would have set them.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["instance_of"]

T = TypeVar("T")

_new = object.__new__
_set_attribute = object.__setattr__


def instance_of(cls: type[T], fields: dict[str, Any]) -> T:
    """``cls(**fields)`` for a frozen dataclass without ``__post_init__`` work to do, at a fifth of its cost.

    Args:
        cls: The dataclass (not slotted: its instances have a ``__dict__``).
        fields: Every field, by name, with its checked value; the instance keeps this
            dictionary as its own, so pass one no one else changes.

    Returns:
        The instance.
    """
    instance: T = _new(cls)
    _set_attribute(instance, "__dict__", fields)
    return instance
