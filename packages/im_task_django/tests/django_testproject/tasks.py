"""Tasks of the test project; what they did is kept in :data:`RESULTS`."""

from __future__ import annotations

import threading
from typing import Any

from django_testproject.models import Note
from im_task import PermanentTaskFailure, SingularTaskFailure, task

RESULTS: list[Any] = []
_lock = threading.Lock()
#: Set each time a task records something.
recorded = threading.Event()


def _record(value: Any) -> None:
    with _lock:
        RESULTS.append(value)
    recorded.set()


@task
def record(value: Any) -> None:
    _record(value)


@task
def fail_permanently() -> None:
    raise PermanentTaskFailure("this task gives up")


@task
def fail_singular() -> None:
    raise SingularTaskFailure("try again later")


@task
def crash() -> None:
    raise RuntimeError("internal detail that must not reach the response")


@task(retry_options={"task_retry_limit": 1})
def limited(value: Any) -> None:
    _record(value)


@task(transactional=True)
def record_note_after_commit(note_id: int, using: str = "default") -> None:
    """Records the note's text: the task runs after commit, so the row is there."""
    _record(Note.objects.using(using).get(pk=note_id).text)


@task(transactional=True)
def record_transactional(value: Any) -> None:
    _record(value)
