"""Shared fixtures of the core tests: every test starts from a clean, isolated configuration."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from im_task.testing import isolated_settings

# Make the helper modules of this directory (core_sink) importable by name, so tasks pickle them by reference.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import core_sink  # noqa: E402 - importable only once the directory is on sys.path

#: The secret every test is configured with.
TEST_SECRET = "test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path) -> Iterator[None]:
    """Fresh settings (a fixed secret, a private data dir), no IM_TASK_* environment, the default route."""
    core_sink.reset()
    with isolated_settings(tmp_path, secret=TEST_SECRET):
        yield
    core_sink.reset()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The path of a local-queue database file in the test's own folder (not created yet)."""
    return tmp_path / "queue.sqlite3"
