"""Where tasks run by the im-task-webapp2 tests record what they did.

Task code is pickled, and a function pickled by value carries copies of the
globals it uses; this module is imported by name (the conftest puts this
directory on ``sys.path``), so it is pickled by reference and shared.
"""

from __future__ import annotations

import threading
from typing import Any

calls: list[Any] = []
_lock = threading.Lock()


def record(item: Any) -> None:
    """Records one call."""
    with _lock:
        calls.append(item)


def reset() -> None:
    """Forgets every recorded call."""
    with _lock:
        calls.clear()
