"""Shared fixtures of the core tests: every test starts from a clean, isolated configuration.

The isolation is the ``im_task_settings`` fixture of im-task's pytest plugin;
the task sink is the shared :mod:`im_task_testsupport.sink`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from im_task_testsupport import sink

from im_task.testing.plugin import ImTaskSettings

#: The secret every test is configured with.
TEST_SECRET = "test-secret-0123456789abcdefghijklmn"


@pytest.fixture(autouse=True)
def _isolated_config(im_task_settings: ImTaskSettings, tmp_path: Path) -> Iterator[None]:
    """Fresh settings (a fixed secret, ``tmp_path`` as data dir), no IM_TASK_* environment, the default route."""
    sink.reset()
    im_task_settings(secret=TEST_SECRET, data_dir=tmp_path)
    yield
    sink.reset()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The path of a local-queue database file in the test's own folder (not created yet)."""
    return tmp_path / "queue.sqlite3"
