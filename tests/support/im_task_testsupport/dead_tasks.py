"""Tasks that die (fail permanently, give up, fail until healed), for the dead-letter tests; importable by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from im_task import PermanentTaskFailure, get_retry_count, task
from im_task_testsupport import sink

__all__ = ["always_fails", "fails_until_healed", "gives_up_after_one_retry", "succeeds"]


@task
def succeeds(value: Any) -> None:
    """Records ``("succeeds", value)``."""
    sink.record("succeeds", value)


@task
def always_fails(reason: str) -> None:
    """Fails permanently with ``reason``, recording ``("always_fails", reason)`` first."""
    sink.record("always_fails", reason)
    raise PermanentTaskFailure(reason)


@task
def fails_until_healed(marker: str, payload: Any = None) -> None:
    """Fails permanently until the file ``marker`` exists; then records ``("healed", marker)``."""
    if not Path(marker).exists():
        raise PermanentTaskFailure(f"{marker} does not exist yet")
    sink.record("healed", marker)


@task(retry_options={"task_retry_limit": 1, "min_backoff_seconds": 0.01, "max_backoff_seconds": 0.01})
def gives_up_after_one_retry() -> None:
    """Fails with 500 on every attempt, recording ``("gives_up", retry count)``; task_retry_limit is 1."""
    sink.record("gives_up", get_retry_count())
    raise RuntimeError(f"attempt {get_retry_count() + 1} fails")
