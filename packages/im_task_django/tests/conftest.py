"""Fixtures: the test project set up once, im-task state reset around each test.

The root ``conftest.py`` puts this directory on ``sys.path`` (``django_testproject``
is imported by name); the clean im-task state and the recording transport
come from im-task's pytest plugin (``im_task_settings``, ``im_task_recorder``).
"""

# The test project is set up before the imports that need Django.
# ruff: noqa: E402

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from django_testproject import setup

setup()

from django.core.wsgi import get_wsgi_application

from django_testproject import tasks
from django_testproject.models import Note
from im_task import configure
from im_task.retry import RetryPolicy
from im_task.testing import serve_wsgi
from im_task.testing.plugin import ImTaskSettings
from im_task.transactions import register_binder, unregister_binder
from im_task.transports import RecordingTransport
from im_task.transports.local import LocalTransport
from im_task_django.conf import apply_settings
from im_task_django.models import OutboxTask
from im_task_django.transactions import binder

SECRET = "im-task-django-test-secret-0123456789"


@pytest.fixture(autouse=True)
def empty_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Runs each test in an empty working directory, and checks that the test left nothing there.

    im-task keeps its defaults (``.im_task``: local secret, local queue) in the working
    directory; a test that writes there is missing a ``data_dir``.
    """
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    left = sorted(path.name for path in cwd.iterdir())
    assert left == [], f"the test wrote {left} into the working directory; give it a data_dir under tmp_path"


@pytest.fixture(autouse=True)
def im_task_state(im_task_settings: ImTaskSettings, tmp_path: Path, empty_working_directory: Path) -> Iterator[None]:
    """Fresh im-task settings (IM_TASK applied, a known secret), empty tables and results; all put back after."""
    apply_settings()
    register_binder(binder)  # setup() took it out: only this package's tests have it
    im_task_settings(data_dir=tmp_path, secret=SECRET)
    tasks.RESULTS.clear()
    tasks.recorded.clear()
    yield
    unregister_binder(binder)
    for alias in ("default", "other"):
        OutboxTask.objects.using(alias).all().delete()
        Note.objects.using(alias).all().delete()


@pytest.fixture
def recorder(im_task_recorder: RecordingTransport) -> RecordingTransport:
    """The plugin's ``im_task_recorder``: a RecordingTransport, configured as the transport."""
    return im_task_recorder


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """The test project served over real HTTP on 127.0.0.1; yields its base URL."""
    with serve_wsgi(get_wsgi_application()) as url:
        yield url


@pytest.fixture
def http_local_queue(tmp_path: Path, server: str) -> Iterator[LocalTransport]:
    """The local queue, delivering over HTTP to the project served on 127.0.0.1, with quick retries."""
    with LocalTransport(
        tmp_path / "queue.sqlite3",
        target=server,
        default_policy=RetryPolicy(min_backoff=0.05, max_backoff=0.2, max_attempts=5),
    ) as queue:
        configure(transport=queue)
        yield queue
