"""The embedded local queue delivering to each adapter over HTTP, retries included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance_support import CAP, Served
from im_task_testsupport import sink as conformance_recorder

from im_task import (
    PermanentTaskFailure,
    SingularTaskFailure,
    configure,
    get_execution_count,
    get_retry_count,
    task,
)
from im_task.retry import RetryPolicy
from im_task.transports import LocalTransport


@task
def ran(value: object) -> None:
    conformance_recorder.record("ran", value)


@task
def large(padding: bytes) -> None:
    conformance_recorder.record("large", len(padding))


@task
def flaky() -> None:
    attempt = (get_retry_count(), get_execution_count())
    conformance_recorder.record("flaky", attempt)
    if attempt[0] == 0:
        raise RuntimeError("first attempt fails with 500")
    if attempt[0] == 1:
        raise SingularTaskFailure("second attempt fails with 408")


@task
def gives_up() -> None:
    conformance_recorder.record("gives_up")
    raise PermanentTaskFailure("not retried")


@pytest.fixture
def queue(served_app: Served, tmp_path: Path) -> Iterator[LocalTransport]:
    fast = RetryPolicy(min_backoff=0.01, max_backoff=0.05)
    transport = LocalTransport(tmp_path / "queue.sqlite3", target=served_app.base_url, default_policy=fast)
    configure(transport=transport)
    try:
        yield transport
    finally:
        transport.close()


def test_the_local_queue_delivers_over_http_and_retries(queue: LocalTransport) -> None:
    ran("over http")
    large(b"x" * (CAP - 2048))
    flaky()
    gives_up()
    assert queue.join(timeout=60, scheduled=True)

    events = conformance_recorder.events()
    assert ("ran", "over http") in events
    assert ("large", CAP - 2048) in events
    assert events.count("gives_up") == 1
    # A 500 is not an execution; a 408 is.
    assert [event[1] for event in events if isinstance(event, tuple) and event[0] == "flaky"] == [
        (0, 0),
        (1, 0),
        (2, 1),
    ]
    assert len(events) == 6
