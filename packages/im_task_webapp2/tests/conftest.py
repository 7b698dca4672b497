"""Fixtures of the im-task-webapp2 tests: a clean im-task configuration around each test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import im_task.config
import im_task_webapp2  # noqa: F401 - imports webapp2 first, without its import-time warnings
from im_task import configure, set_taskroute
from im_task.routing import DEFAULT_TASKROUTE
from im_task.transports import RecordingTransport

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import webapp2_sink  # noqa: E402 - importable once the directory is on sys.path

#: The secret every test is configured with.
SECRET = "webapp2-test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh settings (a fixed secret, a private data dir, a recording transport), the default route."""
    for name in list(os.environ):
        if name.startswith("IM_TASK_") or name == "GAE_ENV":
            monkeypatch.delenv(name)
    im_task.config.reset()
    set_taskroute(DEFAULT_TASKROUTE)
    configure(data_dir=tmp_path, secret=SECRET, transport=RecordingTransport())
    webapp2_sink.reset()
    yield
    im_task.config.reset()
    set_taskroute(DEFAULT_TASKROUTE)
    webapp2_sink.reset()
