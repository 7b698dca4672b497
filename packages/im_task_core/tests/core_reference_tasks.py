"""Task functions whose module holds an unpicklable global: they only travel by reference."""

from __future__ import annotations

import threading

from im_task_testsupport import sink

from im_task import task

LOCK = threading.Lock()


@task
def guarded(value: int) -> None:
    """Records ``value`` under the module's lock."""
    with LOCK:
        sink.record(("guarded", value))


class Counter:
    """An object whose decorated method uses the unpicklable module lock."""

    def __init__(self, name: str) -> None:
        self.name = name

    @task(queue="counters")
    def bump(self, by: int) -> None:
        """Records this counter's name and increment."""
        with LOCK:
            sink.record(("bump", self.name, by))
