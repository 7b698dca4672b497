"""Cloud Tasks (gcloud-tasks-emulator) delivering to each adapter over HTTP: both target kinds, retries included.

Each test starts an emulator whose App Engine target is the adapter's served
application (an emulator delivers App Engine tasks to one host and port);
HTTP-target tasks carry the application's URL. The emulator is installed on
first use into its own cached virtual environment; when it cannot be, the
tests are skipped with one line saying why (see
:mod:`im_task_testsupport.cloudtasks_emulator`). Nothing here depends on
where the emulator differs from the service (no backoff, equal retry and
execution counts, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conformance_support import CAP, Served
from im_task_testsupport import sink
from im_task_testsupport.cloudtasks_emulator import Emulator, emulator_for_tests
from im_task_testsupport.context import task_context
from im_task_testsupport.retried_tasks import flaky

from im_task import PermanentTaskFailure, configure, task
from im_task.transports import CloudTasksTransport

QUEUES = ("default", "other")
WAIT = 60.0


@task
def ran(value: object) -> None:
    sink.record("ran", value, task_context("X-CloudTasks-TaskName")["header"] is not None)


@task
def large(padding: bytes) -> None:
    sink.record("large", len(padding))


@task(queue="other")
def gives_up() -> None:
    sink.record("gives_up")
    raise PermanentTaskFailure("not retried")


@pytest.fixture
def emulator(served_app: Served) -> Iterator[Emulator]:
    """An emulator delivering App Engine tasks to this adapter's served app (skips when it cannot be installed)."""
    with emulator_for_tests(served_app.base_url, queues=QUEUES, max_retries=10) as running:
        yield running


def cloud_tasks(emulator: Emulator, **options: Any) -> CloudTasksTransport:
    transport = CloudTasksTransport(emulator.project, emulator.location, emulator_host=emulator.host, **options)
    configure(transport=transport)
    return transport


def test_cloud_tasks_delivers_over_http_and_retries(served_app: Served, emulator: Emulator) -> None:
    app_engine = cloud_tasks(emulator)
    try:
        ran("app engine target")
        large(b"x" * (CAP - 2048))
        flaky()
        gives_up()
    finally:
        app_engine.close()
    http = cloud_tasks(emulator, base_url=served_app.base_url)
    try:
        ran("http target")
    finally:
        http.close()

    sink.wait_for(7, timeout=WAIT)  # ran twice, large, gives_up, flaky three times
    assert emulator.wait_idle(QUEUES, timeout=WAIT)
    events = sink.events()
    assert ("ran", "app engine target", False) in events
    assert ("ran", "http target", True) in events  # the X-CloudTasks-* headers of HTTP targets
    assert ("large", CAP - 2048) in events
    assert events.count("gives_up") == 1
    assert [event[1] for event in events if isinstance(event, tuple) and event[0] == "flaky"] == [0, 1, 2]
    assert len(events) == 7
