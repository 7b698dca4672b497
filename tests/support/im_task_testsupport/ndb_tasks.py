"""Tasks of the Datastore tests, importable by name so that the test process and its children share them."""

from __future__ import annotations

import hashlib

from im_task import get_retry_count, task
from im_task_testsupport import sink


@task
def digest(data: bytes) -> None:
    """Records the size and SHA-256 of what arrived."""
    sink.record("digest", len(data), hashlib.sha256(data).hexdigest())


@task
def digest_after_a_failure(data: bytes) -> None:
    """Fails its first attempt (the queue retries it), then records what arrived."""
    if get_retry_count() == 0:
        raise RuntimeError("first attempt fails on purpose")
    sink.record("retried", len(data), hashlib.sha256(data).hexdigest())


@task(transactional=True)
def record_id(number: int, padding: bytes = b"") -> None:
    """Records its number (a transactional task; ``padding`` makes it large)."""
    sink.record(number)


@task
def keep(*items: object) -> None:
    """Records that it ran."""
    sink.record("ran")
