"""Shared fixtures of the core tests: every test starts from a clean, isolated configuration."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import im_task.config
import im_task.transactions
from im_task import configure, set_taskroute
from im_task.routing import DEFAULT_TASKROUTE

# Make the helper modules of this directory (core_sink) importable by name, so tasks pickle them by reference.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import core_sink  # noqa: E402 - importable only once the directory is on sys.path

#: The secret every test is configured with.
TEST_SECRET = "test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh settings (a fixed secret, a private data dir), no IM_TASK_* environment, the default route."""
    for name in list(os.environ):
        if name.startswith("IM_TASK_") or name == "GAE_ENV":
            monkeypatch.delenv(name)
    im_task.config.reset()
    configure(data_dir=tmp_path, secret=TEST_SECRET)
    core_sink.reset()
    # Adapters' test suites may run in this process and register transaction binders of their own.
    monkeypatch.setattr(im_task.transactions, "_binders", [])
    yield
    im_task.config.reset()
    set_taskroute(DEFAULT_TASKROUTE)
    core_sink.reset()
