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


def huey_tasks(huey: object) -> tuple[object, object]:
    """The no-op task registered on a huey instance, and a counter of its runs (rows 3d-3e).

    Args:
        huey: A ``huey.Huey``.

    Returns:
        The huey task, and the list each run appends to.
    """
    runs: list[None] = []

    def noop_huey(a: int, b: str, c: float | None = None) -> None:
        runs.append(None)

    noop_huey.__qualname__ = noop_huey.__name__  # huey names tasks by module and name
    return huey.task()(noop_huey), runs  # type: ignore[attr-defined]
