"""The Flask demo and the benchmark script, run as a user runs them (``nox -s demo`` and ``nox -s bench``)."""

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
def test_the_flask_demo_sees_every_outcome() -> None:
    result = run_script("examples/run_demo.py", "flask")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Every scenario ran as expected." in result.stdout
    for scenario in ("closure", "fan-out", "function-argument", "countdown", "retries", "permanent-failure", "lambda"):
        assert f"\n{scenario} " in result.stdout


@pytest.mark.timeout(240)
def test_the_demo_fails_and_says_what_is_missing_when_time_runs_out() -> None:
    result = run_script("examples/run_demo.py", "flask", "--timeout", "0.2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: not every outcome was seen within 0.2s" in result.stdout
    assert "MISSING" in result.stdout  # the countdown task is due only after 1 s


def test_the_demo_runner_refuses_unknown_frameworks() -> None:
    result = run_script("examples/run_demo.py", "bottle")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.mark.timeout(240)
def test_the_quick_benchmarks_print_the_table() -> None:
    result = run_script("benchmarks/run.py", "--quick")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("benchmark"))
    assert "baseline (same process)" in header
    assert "ratio" in header
    for prefix in ("1. enqueue", "2. run a no-op task", "3a. local queue", "3b. local queue", "3c. local queue"):
        row = next(line for line in lines if line.startswith(prefix))
        assert row.rstrip().endswith(("x", "-")), row
