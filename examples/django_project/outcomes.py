"""Where the demo's tasks record what they did, so the demo can check it.

Tasks that are closures or lambdas are pickled by value, with copies of the
globals they use; a list in the module that defines them would not be the
list the demo reads. This module is imported by name (it is pickled by
reference), so every task records into the same :data:`events`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Event", "events", "record", "reset", "wait_until"]


@dataclass(frozen=True)
class Event:
    """One thing a task did.

    Attributes:
        scenario: Which demo scenario the task belongs to.
        detail: What happened, for people.
        ok: False for an attempt that failed on purpose.
        at: Seconds since :func:`reset`.
    """

    scenario: str
    detail: str
    ok: bool
    at: float


events: list[Event] = []
_changed = threading.Condition()
_started = time.monotonic()


def record(scenario: str, detail: str, *, ok: bool = True) -> None:
    """Records and prints one thing a task did.

    Args:
        scenario: The demo scenario.
        detail: What happened.
        ok: False for an attempt that failed on purpose.
    """
    with _changed:  # printing under the lock keeps lines of concurrent tasks apart
        event = Event(scenario, detail, ok, time.monotonic() - _started)
        events.append(event)
        mark = "ran " if ok else "FAIL"
        print(f"  [{event.at:6.2f}s] {mark} {scenario:<17} {detail}", flush=True)
        _changed.notify_all()


def reset() -> None:
    """Forgets every event and restarts the clock."""
    global _started  # noqa: PLW0603 - one clock for the demo
    with _changed:
        events.clear()
        _started = time.monotonic()


def wait_until(done: Callable[[], bool], timeout: float) -> bool:
    """Waits until ``done()`` is true, re-checking at each recorded event.

    Args:
        done: A callable without arguments.
        timeout: Most seconds to wait.

    Returns:
        Whether ``done()`` became true in time.
    """
    if not callable(done):
        raise TypeError("done must be a callable without arguments")
    with _changed:
        return bool(_changed.wait_for(done, timeout))


def snapshot() -> list[Event]:
    """A copy of the events recorded so far."""
    with _changed:
        return list(events)
