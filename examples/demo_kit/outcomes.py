"""Where the demo's tasks record what they did, so that the runner can check it.

Tasks that are closures or lambdas are pickled by value, with copies of the
globals they use; a list in the module that defines them would not be the
list the runner reads. This module is imported by name (it is pickled by
reference), so every task records into the same events.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["Counts", "Event", "counts", "record", "reset", "say", "snapshot", "wait_until"]


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


@dataclass(frozen=True)
class Counts:
    """How many attempts of a scenario's tasks succeeded and how many failed on purpose.

    Attributes:
        runs: Attempts that succeeded.
        failures: Attempts that failed on purpose.
    """

    runs: int
    failures: int = 0

    def __post_init__(self) -> None:
        for name in ("runs", "failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")

    def covers(self, other: Counts) -> bool:
        """Whether these counts reach ``other``'s in both runs and failures."""
        return self.runs >= other.runs and self.failures >= other.failures

    def describe(self) -> str:
        """E.g. ``"2 failed, 1 ran"``."""
        parts = [f"{self.failures} failed"] if self.failures else []
        if self.runs or not parts:
            parts.append(f"{self.runs} ran")
        return ", ".join(parts)


_events: list[Event] = []
_changed = threading.Condition()  # reentrant: wait_until's test may read the events
_started = time.monotonic()


def say(line: str) -> None:
    """Prints one line whole, even while tasks print theirs from other threads.

    Args:
        line: The text, without its newline.
    """
    with _changed:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def record(scenario: str, detail: str, *, ok: bool = True) -> None:
    """Records and prints one thing a task did.

    Args:
        scenario: The demo scenario.
        detail: What happened.
        ok: False for an attempt that failed on purpose.
    """
    with _changed:
        event = Event(scenario, detail, ok, time.monotonic() - _started)
        _events.append(event)
        say(f"  [{event.at:6.2f}s] {'ran ' if ok else 'FAIL'} {scenario:<17} {detail}")
        _changed.notify_all()


def reset() -> None:
    """Forgets every event and restarts the clock."""
    global _started  # noqa: PLW0603 - one clock for the demo
    with _changed:
        _events.clear()
        _started = time.monotonic()


def snapshot() -> list[Event]:
    """A copy of the events recorded so far."""
    with _changed:
        return list(_events)


def counts(scenarios: Iterable[str]) -> dict[str, Counts]:
    """Counts the successful and failed attempts recorded so far.

    Args:
        scenarios: The scenarios to count, zero included.

    Returns:
        Each scenario's counts.
    """
    runs: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for event in snapshot():
        (runs if event.ok else failures)[event.scenario] += 1
    return {name: Counts(runs[name], failures[name]) for name in scenarios}


def wait_until(done: Callable[[], bool], timeout: float) -> bool:
    """Waits until ``done()`` is true, re-checking at each recorded event.

    Args:
        done: A callable without arguments.
        timeout: Most seconds to wait.

    Returns:
        Whether ``done()`` became true in time.

    Raises:
        TypeError: If ``done`` is not callable.
    """
    if not callable(done):
        raise TypeError("done must be a callable without arguments")
    with _changed:
        return bool(_changed.wait_for(done, timeout))
