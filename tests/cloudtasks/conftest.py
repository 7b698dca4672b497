"""Fixtures of the end-to-end tests through gcloud-tasks-emulator.

One application (:class:`~im_task.wsgi.TaskWSGIApp`) is served on 127.0.0.1
for the whole session, and one emulator delivers to it; each test gets a
clean im-task configuration with a :class:`CloudTasksTransport` talking to
that emulator, App Engine targets by default. The emulator is installed on
first use into its own cached virtual environment
(:mod:`im_task_testsupport.cloudtasks_emulator`); when it cannot be, every
test here is skipped with one line saying why (or fails, with
``REQUIRE_GCLOUD_TASKS_EMULATOR=1``). Its log lines are logged, so pytest shows
them under "Captured log" when a test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from im_task_testsupport import sink
from im_task_testsupport.cloudtasks_emulator import Emulator, emulator_for_tests

from im_task import configure
from im_task.routing import DEFAULT_TASKROUTE
from im_task.testing import serve_wsgi
from im_task.testing.plugin import ImTaskSettings
from im_task.transports import CloudTasksTransport
from im_task.wsgi import TaskWSGIApp

SECRET = "cloudtasks-e2e-secret-0123456789abcdef"
#: The queues the emulator has; the tests' tasks use these names.
QUEUES = ("default", "spread-a", "spread-b", "spread-c")
#: How often the emulator retries a failing task (at once, without backoff) before dropping it.
MAX_RETRIES = 10
#: Most seconds a test waits for its tasks.
WAIT = 60.0


@dataclass
class CloudTasks:
    """What an end-to-end test gets: the emulator, the served app, and a way to switch transports.

    Attributes:
        emulator: The running emulator.
        base_url: The served application's base URL.
        transport: The installed transport (App Engine targets unless :meth:`use` changed it).
        queues: The emulator's queues.
    """

    queues = QUEUES
    emulator: Emulator
    base_url: str
    transport: CloudTasksTransport
    _made: list[CloudTasksTransport]

    def use(self, **options: Any) -> CloudTasksTransport:
        """Installs another CloudTasksTransport on the emulator, e.g. ``use(base_url=...)`` for HTTP targets."""
        transport = CloudTasksTransport(
            self.emulator.project, self.emulator.location, emulator_host=self.emulator.host, **options
        )
        self._made.append(transport)
        configure(transport=transport)
        self.transport = transport
        return transport

    def wait_idle(self, timeout: float = WAIT) -> None:
        """Waits until no queue holds a task (and none is retried), failing the test after ``timeout``."""
        assert self.emulator.wait_idle(QUEUES, timeout), f"the emulator's queues did not empty within {timeout}s"


@pytest.fixture(scope="session")
def served_url() -> Iterator[str]:
    """The base URL of a :class:`TaskWSGIApp` served on 127.0.0.1 for the whole session."""
    with serve_wsgi(TaskWSGIApp(DEFAULT_TASKROUTE)) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def emulator(served_url: str) -> Iterator[Emulator]:
    """gcloud-tasks-emulator delivering to the served app, for the whole session (skips if it cannot be installed)."""
    with emulator_for_tests(served_url, queues=QUEUES, max_retries=MAX_RETRIES) as running:
        yield running


@pytest.fixture
def cloud_tasks(emulator: Emulator, served_url: str, im_task_settings: ImTaskSettings) -> Iterator[CloudTasks]:
    """A clean configuration with a CloudTasksTransport on the emulator; the queues are emptied afterwards."""
    sink.reset()
    im_task_settings(secret=SECRET)
    made: list[CloudTasksTransport] = []
    setup = CloudTasks(emulator, served_url, None, made)  # type: ignore[arg-type]  # set by use() below
    setup.use()
    try:
        yield setup
    finally:
        for transport in made:
            transport.close()
        for queue in QUEUES:
            emulator.purge_queue(queue)
        sink.reset()


WaitFor = Callable[[int], list[object]]


@pytest.fixture
def wait_for() -> WaitFor:
    """``wait_for(n)``: waits until tasks recorded ``n`` events (at most :data:`WAIT` seconds) and returns them all."""
    return lambda count: sink.wait_for(count, timeout=WAIT)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Says once, at the end, that the emulator was missing and how many tests that skipped."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "gcloud-tasks-emulator" in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        reason = str(skipped[0].longrepr[2]) if isinstance(skipped[0].longrepr, tuple) else "see the skips"
        reason = reason.removeprefix("Skipped: ")
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: the Cloud Tasks emulator is unavailable ({reason})", yellow=True
        )
