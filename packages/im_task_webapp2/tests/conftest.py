"""Fixtures of the im-task-webapp2 tests: a clean im-task configuration around each test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import im_task_webapp2  # noqa: F401 - imports webapp2 first, without its import-time warnings
from im_task.testing import isolated_settings
from im_task.transports import RecordingTransport

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import webapp2_sink  # noqa: E402 - importable once the directory is on sys.path

#: The secret every test is configured with.
SECRET = "webapp2-test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path) -> Iterator[None]:
    """Fresh settings (a fixed secret, a private data dir, a recording transport), the default route."""
    webapp2_sink.reset()
    with isolated_settings(tmp_path, secret=SECRET, transport=RecordingTransport()):
        yield
    webapp2_sink.reset()
