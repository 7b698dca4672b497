"""im-task's pytest plugin: fixtures for testing tasks, and a guard for the working directory's queue.

Installing im-task registers this module with pytest (the ``pytest11`` entry
point ``im_task``), so its fixtures are available in every test without an
import:

- ``im_task_settings``: a clean im-task configuration in a temporary data
  directory, put back after the test; call it to configure more.
- ``im_task_recorder``: a :class:`~im_task.transports.RecordingTransport` installed.
- ``im_task_immediate``: an :class:`~im_task.transports.ImmediateTransport` installed.
- ``im_task_local_queue``: a :class:`~im_task.transports.LocalTransport` in a
  temporary directory, installed, delivering over real HTTP to the WSGI
  application of the ``im_task_wsgi_app`` fixture, served on 127.0.0.1.
- ``im_task_wsgi_app``: that application; a :class:`~im_task.wsgi.TaskWSGIApp`
  unless you override the fixture with your own application.

Outside these fixtures, a test that would use the working directory's real
``.im_task`` data directory (the local queue, the local secret) fails with a
:class:`~im_task.ConfigurationError` naming the fixtures to use. Turn the
guard off with ``im_task_guard = false`` in pytest's configuration, or the
whole plugin with ``-p no:im_task``.

Example:
    >>> def test_sign_up_enqueues_the_mail(im_task_recorder):  # doctest: +SKIP
    ...     sign_up("ada@example.com")
    ...     [request] = im_task_recorder.requests
    ...     assert request.queue == "mail"
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from im_task.config import configure
from im_task.state import STATE
from im_task.testing import ServedQueue, isolated_settings, serve_local_queue
from im_task.transports import ImmediateTransport, RecordingTransport

__all__ = [
    "GUARD_MESSAGE",
    "ImTaskSettings",
    "im_task_immediate",
    "im_task_local_queue",
    "im_task_recorder",
    "im_task_settings",
    "im_task_wsgi_app",
]

WSGIApp = Callable[..., Any]

#: What a test that would use the working directory's ``.im_task`` is told.
GUARD_MESSAGE = (
    "This test would use the real im-task data directory of the working directory (.im_task: the local queue "
    "and the local secret). Use one of im-task's pytest fixtures: im_task_settings (a temporary data directory), "
    "im_task_recorder (tasks recorded), im_task_immediate (tasks run at once) or im_task_local_queue (a local "
    "queue in a temporary directory, delivering over HTTP); or configure a data_dir for the test, e.g. with "
    "im_task.testing.isolated_settings(tmp_path). To allow it anyway, set im_task_guard = false in pytest's "
    "configuration."
)

_GUARD_INI = "im_task_guard"
_SAVED_GUARD = pytest.StashKey[tuple[bool, str | None]]()


class ImTaskSettings:
    """What the ``im_task_settings`` fixture gives: the test's im-task configuration.

    Call it with :func:`~im_task.configure` keywords to configure more for
    the test; everything is put back when the test ends.

    Attributes:
        data_dir: The test's temporary im-task data directory (where the local
            secret and, by default, the local queue are kept).

    Example:
        >>> def test_with_a_fixed_secret(im_task_settings):  # doctest: +SKIP
        ...     im_task_settings(secret="a-test-secret-of-32-or-more-bytes", default_queue="mail")
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def __call__(self, **settings: Any) -> None:
        """Configures more settings for this test (see :func:`im_task.configure`).

        Args:
            **settings: Settings by their :func:`~im_task.configure` names.

        Raises:
            ConfigurationError: For an unknown setting or a bad value.
        """
        configure(**settings)

    def __repr__(self) -> str:
        return f"ImTaskSettings(data_dir={str(self.data_dir)!r})"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declares the ``im_task_guard`` configuration value."""
    parser.addini(
        _GUARD_INI,
        "Fail tests that would use the working directory's .im_task data directory (default: true).",
        type="bool",
        default=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    """Turns the guard on (unless ``im_task_guard = false``); pytest_unconfigure puts it back."""
    config.stash[_SAVED_GUARD] = (True, STATE.guard)
    if config.getini(_GUARD_INI):
        STATE.guard = GUARD_MESSAGE


def pytest_unconfigure(config: pytest.Config) -> None:
    """Puts back the guard as it was before the session."""
    saved, guard = config.stash.get(_SAVED_GUARD, (False, None))
    if saved:
        STATE.guard = guard


@pytest.fixture
def im_task_settings(tmp_path: Path) -> Iterator[ImTaskSettings]:
    """A clean im-task configuration for the test, in a temporary data directory.

    Inside: no ``IM_TASK_*`` environment variables, no settings from earlier
    ``configure()`` calls or adapters, the default task route, and
    ``data_dir`` set to ``tmp_path / "im_task"``. Afterwards everything is put
    back, however the test ends (see :func:`im_task.testing.isolated_settings`).

    Yields:
        An :class:`ImTaskSettings`: call it to configure more; ``.data_dir`` is the data directory.
    """
    data_dir = tmp_path / "im_task"
    with isolated_settings(data_dir):
        yield ImTaskSettings(data_dir)


@pytest.fixture
def im_task_recorder(im_task_settings: ImTaskSettings) -> Iterator[RecordingTransport]:
    """A :class:`~im_task.transports.RecordingTransport` installed as the transport, in clean settings.

    Tasks are recorded, not run: assert on ``.requests``, then ``.run_all()``
    runs them through the real endpoint and returns the responses.

    Yields:
        The recording transport; closed when the test ends.
    """
    recorder = RecordingTransport()
    configure(transport=recorder)
    try:
        yield recorder
    finally:
        recorder.close()


@pytest.fixture
def im_task_immediate(im_task_settings: ImTaskSettings) -> Iterator[ImmediateTransport]:
    """An :class:`~im_task.transports.ImmediateTransport` installed as the transport, in clean settings.

    Each task runs inside the call that enqueues it, through the whole path;
    its exception reaches the caller (except ``PermanentTaskFailure``).

    Yields:
        The immediate transport (``.responses`` lists each request with its status); closed when the test ends.
    """
    immediate = ImmediateTransport()
    configure(transport=immediate)
    try:
        yield immediate
    finally:
        immediate.close()


@pytest.fixture
def im_task_wsgi_app(im_task_settings: ImTaskSettings) -> WSGIApp:
    """The WSGI application ``im_task_local_queue`` delivers to: a :class:`~im_task.wsgi.TaskWSGIApp`.

    Override this fixture (same name, in your ``conftest.py`` or test module)
    to have tasks delivered to your own application, e.g. a Flask app set up
    with ``ImTask(app)`` or Django's ``get_wsgi_application()``. Make your
    fixture depend on ``im_task_settings`` so that the application is set up
    inside the test's clean configuration.

    Returns:
        The application.
    """
    from im_task.wsgi import TaskWSGIApp

    return TaskWSGIApp()


@pytest.fixture
def im_task_local_queue(im_task_settings: ImTaskSettings, im_task_wsgi_app: WSGIApp) -> Iterator[ServedQueue]:
    """A local queue in the test's data directory, installed, delivering over real HTTP.

    ``im_task_wsgi_app`` is served by a threaded HTTP server on 127.0.0.1,
    and a :class:`~im_task.transports.LocalTransport` (its file in the
    temporary data directory) delivers to it as the production queue would:
    headers, retries with backoff, countdowns. When the test ends, however it
    ends, the queue is closed (deliveries in flight finish), the server
    stopped and the settings put back.

    Yields:
        A :class:`~im_task.testing.ServedQueue`: ``.join()`` waits until the
        queue is drained, ``.transport`` is the ``LocalTransport``,
        ``.base_url`` the server's URL.
    """
    with serve_local_queue(im_task_wsgi_app, im_task_settings.data_dir / "queue.sqlite3") as queue:
        configure(transport=queue.transport)
        yield queue
