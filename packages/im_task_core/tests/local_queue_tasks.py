"""Task functions for the local-queue state and command tests; importable by name from the endpoint."""

from __future__ import annotations

from im_task_testsupport import sink

from im_task import PermanentTaskFailure, task


@task
def greet(name: str, *, times: int = 1) -> None:
    """Records ``("greet", name, times)``."""
    sink.record(("greet", name, times))


@task
def refuse_for_good(reason: str) -> None:
    """Fails permanently: the endpoint answers 200 with the outcome ``failed``."""
    raise PermanentTaskFailure(reason)


@task(retry_options={"task_retry_limit": 0})
def crash_once_and_give_up(secret_value: str) -> None:
    """Raises on its only allowed attempt: the endpoint answers 200 with the outcome ``gave-up``."""
    raise RuntimeError(f"boom with {len(secret_value)} characters")
