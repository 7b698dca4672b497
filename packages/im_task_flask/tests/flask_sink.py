"""Where tasks run by the Flask adapter tests record what they did.

A function pickled by value (a closure, a lambda) carries copies of the
globals it uses, so a test cannot count calls with a variable of its own
module. This module is imported by name (the conftest puts this directory on
``sys.path``), is pickled by reference, and so is the same object in the test
and in the task.
"""

from __future__ import annotations

import threading
from typing import Any

calls: list[Any] = []
_lock = threading.Lock()
_changed = threading.Condition(_lock)


def record(*items: Any) -> None:
    """Records one call's worth of items."""
    with _changed:
        calls.append(items[0] if len(items) == 1 else items)
        _changed.notify_all()


def wait_for(count: int, timeout: float = 30.0) -> list[Any]:
    """Waits until at least ``count`` calls were recorded, and returns them all.

    Raises:
        AssertionError: If fewer were recorded within ``timeout`` seconds.
    """
    with _changed:
        if not _changed.wait_for(lambda: len(calls) >= count, timeout):
            raise AssertionError(f"expected {count} recorded calls within {timeout}s, got {calls!r}")
        return list(calls)


def reset() -> None:
    """Forgets every recorded call."""
    with _lock:
        calls.clear()
