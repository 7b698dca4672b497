"""Where the tasks of the conformance suite record what they saw.

Tasks run in the test server's threads, from a pickled copy of their code:
a function pickled by value carries copies of the globals it uses, so a test
cannot count calls with a variable of its own module. This module is imported
by name (``conftest.py`` puts its directory on ``sys.path``), so cloudpickle
pickles it by reference and the test and the task share it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

_changed = threading.Condition()
_events: list[Any] = []


def record(*items: Any) -> None:
    """Records one event: a single item as itself, several as a tuple."""
    with _changed:
        _events.append(items[0] if len(items) == 1 else items)
        _changed.notify_all()


def events() -> list[Any]:
    """A copy of the events recorded so far, oldest first."""
    with _changed:
        return list(_events)


def wait_for(count: int, timeout: float = 30.0) -> list[Any]:
    """Waits until at least ``count`` events are recorded, then returns them all.

    Raises:
        TimeoutError: Fewer than ``count`` events arrived within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    with _changed:
        while len(_events) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Expected {count} recorded events within {timeout}s, got {_events!r}.")
            _changed.wait(left)
        return list(_events)


def reset() -> None:
    """Forgets every recorded event."""
    with _changed:
        _events.clear()


class Tripwire:
    """An object that records ``"unpickled"`` when it is unpickled.

    Put one in a task's arguments to prove that a refused request was never
    deserialised.
    """

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return record, ("unpickled",)
