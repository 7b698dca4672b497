"""The functions the benchmarks enqueue, in an importable module so both sides pickle them by reference."""

from __future__ import annotations

from im_task import task


def noop_plain(a: int, b: str, c: float | None = None) -> None:
    """Does nothing: the baseline's callable."""


@task
def noop(a: int, b: str, c: float | None = None) -> None:
    """Does nothing, as a task."""


@task
def noop_one(value: object) -> None:
    """Does nothing with one argument, as a task: what ``map`` and the async rows enqueue."""
