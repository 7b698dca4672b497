"""The benchmark script, run as a user runs it (``nox -s bench``); the demos are tested in ``tests/test_demos.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def run_script(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("IM_TASK_")}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.timeout(240)
def test_the_quick_benchmarks_print_the_table() -> None:
    result = run_script("benchmarks/run.py", "--quick")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("benchmark"))
    assert "baseline (same process)" in header
    assert "ratio" in header
    rows = ("1. enqueue", "2. run a no-op task", "2b. ", "2c. ", "2d. ", "3a. local queue", "3b. local queue")
    for prefix in (*rows, "3c. local queue", "3d. local queue vs huey", "3e. local queue vs huey"):
        row = next(line for line in lines if line.startswith(prefix))
        assert row.rstrip().endswith(("x", "-")), row
