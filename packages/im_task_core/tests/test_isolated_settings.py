"""im_task.testing.isolated_settings: a clean configuration inside, everything put back after."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from im_task import config, get_taskroute, local_target, runtime, set_taskroute, transactions
from im_task.state import STATE
from im_task.testing import isolated_settings
from im_task.transports import RecordingTransport


class _Binder:
    description = "a test binder"

    def in_transaction(self) -> bool:
        return False

    def enqueue_on_commit(self, request: object, transport: object) -> str:
        raise AssertionError("never called")


def _app(environ: object, start_response: object) -> list[bytes]:
    return []


def test_inside_is_clean_and_everything_is_put_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binder = _Binder()
    monkeypatch.setenv("IM_TASK_DEFAULT_QUEUE", "from-env")
    monkeypatch.setenv("K_SERVICE", "svc")
    local_target.register_local_target(_app)
    transactions.register_binder(binder)
    set_taskroute("/outer")
    STATE.warmed_up.add("some.module")
    try:
        recorder = RecordingTransport()
        with isolated_settings(tmp_path / "inner", secret="inner-secret-0123456789abcdefghij", transport=recorder):
            assert "IM_TASK_DEFAULT_QUEUE" not in os.environ
            assert "K_SERVICE" not in os.environ
            assert config.get_settings().default_queue == "default"
            assert config.get_settings().environment == "development"
            assert runtime.get_transport() is recorder
            assert local_target.get_local_target() is None
            assert STATE.binders == []
            assert get_taskroute() == "/_ah/task"
            assert STATE.warmed_up == set()
            set_taskroute("/changed")
        assert os.environ["IM_TASK_DEFAULT_QUEUE"] == "from-env"
        assert os.environ["K_SERVICE"] == "svc"
        assert local_target.get_local_target() is _app
        assert STATE.binders[-1] is binder
        assert get_taskroute() == "/outer"
        assert "some.module" in STATE.warmed_up
    finally:
        transactions.unregister_binder(binder)
        STATE.warmed_up.discard("some.module")
