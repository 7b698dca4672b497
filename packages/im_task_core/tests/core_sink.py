"""Where tasks run by the core tests record what they did.

Task code is pickled, and a function pickled by value carries copies of the
globals it uses, so tests cannot count calls with a variable of their own
module. This module is imported by name (the conftest puts this directory on
``sys.path``), is pickled by reference, and so is the same object in the test
and in the task.
"""

from __future__ import annotations

import threading
from typing import Any

calls: list[Any] = []
_lock = threading.Lock()


def record(*items: Any) -> None:
    """Records one call's worth of items."""
    with _lock:
        calls.append(items[0] if len(items) == 1 else items)


def reset() -> None:
    """Forgets every recorded call."""
    with _lock:
        calls.clear()
