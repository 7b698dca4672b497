"""The emulator helper itself: it listens on 127.0.0.1 only, and never outlives its ``with`` block or its parent."""

from __future__ import annotations

import os
import socket
import time

import pytest
from im_task_testsupport.cloudtasks_emulator import Emulator, emulator_for_tests, emulator_venv, venv_dir


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether the process ``pid`` has exited (and been reaped) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_venv_is_made_once_and_reused(emulator: Emulator) -> None:
    started = time.monotonic()
    venv = emulator_venv()

    assert venv == venv_dir()
    assert time.monotonic() - started < 1.0  # reused, not rebuilt
    assert (venv / "im-task-complete").is_file()


def test_the_emulator_listens_on_127_0_0_1_only(emulator: Emulator) -> None:
    port = int(emulator.host.rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    # 127.0.0.2 is this machine too (Linux routes all of 127/8 to loopback): a server on every interface answers it.
    if not _loopback_alias_works():
        pytest.skip("127.0.0.2 does not reach this machine here")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=5):
        pass


def _loopback_alias_works() -> bool:
    with socket.socket() as server:
        try:
            server.bind(("127.0.0.2", 0))
        except OSError:
            return False
        server.listen()
        try:
            with socket.create_connection(("127.0.0.2", server.getsockname()[1]), timeout=2):
                return True
        except OSError:
            return False


def fail_with_an_emulator(served_url: str, pids: list[int]) -> None:
    with emulator_for_tests(served_url) as running:
        pids.append(running.process.pid)
        raise RuntimeError("the test failed")


def test_the_emulator_is_stopped_when_the_block_fails(served_url: str) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="the test failed"):
        fail_with_an_emulator(served_url, pids)

    [pid] = pids
    assert gone(pid)


def test_the_emulator_exits_when_its_parent_goes_away(served_url: str) -> None:
    with emulator_for_tests(served_url) as running:
        assert running.process.stdin is not None
        running.process.stdin.close()  # what the parent's death does to the pipe

        assert running.process.wait(timeout=10) == 0
