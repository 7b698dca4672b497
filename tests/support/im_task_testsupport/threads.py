"""Running one function in many threads at once, and collecting what they raised."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["run_in_threads"]


def run_in_threads(function: Callable[[], object], count: int = 8, timeout: float = 60) -> list[BaseException]:
    """Calls ``function`` in ``count`` threads released together by a barrier, and waits for them all.

    Args:
        function: What each thread calls, without arguments.
        count: How many threads.
        timeout: Seconds to wait for each thread.

    Returns:
        What the threads raised (empty when every call returned).

    Raises:
        AssertionError: A thread was still running after ``timeout``.
    """
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            function()
        except BaseException as exc:  # handed to the caller, which asserts on it
            errors.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    running = sum(thread.is_alive() for thread in threads)
    if running:
        raise AssertionError(f"{running} of {count} threads were still running after {timeout} seconds.")
    return errors
