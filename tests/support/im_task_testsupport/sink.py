"""Where tasks run by the tests record what they did.

Task code is pickled, and a function pickled by value (a closure, a lambda,
a function of a test module) carries copies of the globals it uses, so a test
cannot count calls with a variable of its own module. This module is
imported by name (the root ``conftest.py`` puts its directory on
``sys.path``), so cloudpickle pickles it by reference and the test and the
task share it. Every package's conftest resets it around each test.
"""

from __future__ import annotations

import threading
from typing import Any

#: What was recorded, oldest first: a single item as itself, several as a tuple.
calls: list[Any] = []
_changed = threading.Condition()


def record(*items: Any) -> None:
    """Records one call: a single item as itself, several as a tuple."""
    with _changed:
        calls.append(items[0] if len(items) == 1 else items)
        _changed.notify_all()


def events() -> list[Any]:
    """A copy of what was recorded so far, oldest first."""
    with _changed:
        return list(calls)


def wait_for(count: int, timeout: float = 30.0) -> list[Any]:
    """Waits until at least ``count`` calls are recorded, then returns them all.

    Raises:
        AssertionError: Fewer than ``count`` were recorded within ``timeout`` seconds.
    """
    with _changed:
        if not _changed.wait_for(lambda: len(calls) >= count, timeout):
            raise AssertionError(f"Expected {count} recorded calls within {timeout}s, got {calls!r}.")
        return list(calls)


def reset() -> None:
    """Forgets every recorded call."""
    with _changed:
        calls.clear()


class Tripwire:
    """An object that records ``"unpickled"`` when it is unpickled.

    Put one in a task's arguments, or pickle it as a body, to prove that a
    refused request was never deserialised.
    """

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return record, ("unpickled",)
