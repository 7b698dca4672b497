"""Fixtures of the im-task-webapp2 tests: a clean im-task configuration around each test.

Isolation and the recording transport come from im-task's pytest plugin
(``im_task_settings``, ``im_task_recorder``); the task sink is the shared
:mod:`im_task_testsupport.sink`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from im_task_testsupport import sink

import im_task_webapp2  # noqa: F401 - imports webapp2 first, without its import-time warnings
from im_task.testing.plugin import ImTaskSettings
from im_task.transports import RecordingTransport

#: The secret every test is configured with.
SECRET = "webapp2-test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated(im_task_settings: ImTaskSettings, im_task_recorder: RecordingTransport) -> Iterator[None]:
    """Fresh settings (a fixed secret, a private data dir, a recording transport), the default route."""
    sink.reset()
    im_task_settings(secret=SECRET)
    yield
    sink.reset()
