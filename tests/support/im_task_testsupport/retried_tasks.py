"""Tasks that fail their first attempts, for tests of a queue's retries (importable, so they travel by name)."""

from __future__ import annotations

from im_task import SingularTaskFailure, get_retry_count, task
from im_task_testsupport import sink

__all__ = ["flaky"]


@task
def flaky() -> None:
    """Fails with 500, then with 408, then succeeds; records ``("flaky", retry count)`` on every attempt."""
    retry = get_retry_count()
    sink.record("flaky", retry)
    if retry == 0:
        raise RuntimeError("the first attempt fails with 500")
    if retry == 1:
        raise SingularTaskFailure("the second attempt fails with 408")
