"""Public names imported when first used (PEP 562), so that a package costs nothing until then."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    namespace: dict[str, Any], names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names are imported when first used.

    Args:
        namespace: The package's ``globals()``; a name, once imported, is kept there.
        names: The module each lazy name comes from, by name.

    Returns:
        The package's ``__getattr__`` and ``__dir__``.

    Example:
        >>> __getattr__, __dir__ = lazy_names(globals(), {"task": "im_task.decorator"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # looked up once
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace.get("__all__", ()), *names})

    return __getattr__, __dir__
