"""The local queue's fault runs (``local_queue_faults.py``) at a small size: kill -9 of workers, purge and compact.

``nox -s faults`` runs every subcommand (``kill9``, ``fulldisk``, ``idle``,
``compact``) at full size.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).with_name("local_queue_faults.py")


def run_faults(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", *args], capture_output=True, text=True, timeout=100, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report (status {done.returncode}):\n{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0, f"{report['failures']}\n{done.stderr}"
    assert report["ok"], report
    return report


@pytest.mark.timeout(110)
def test_workers_killed_while_delivering_lose_no_task() -> None:
    report = run_faults("kill9", "--tasks", "300", "--kills", "2")
    assert report["kills"] == 2
    assert report["lost"] == 0
    assert report["distinct_delivered"] == report["store_done"] == 300
    assert report["store_left"] == 0
    # Each worker died in the middle of its share of the deliveries, so the last worker had tasks left to drain.
    assert report["delivered_before_last_kill"] < 300


@pytest.mark.timeout(110)
def test_compact_shrinks_the_file_after_a_purge() -> None:
    # 2,000 tasks of 4 KB: past compact()'s threshold of 4 MB free, which 300 B bodies reach from ~10,000 tasks.
    report = run_faults("compact", "--tasks", "2000", "--body-size", "4000")
    assert report["purged"] == 2000
    assert report["vacuumed"] is True
    assert report["after_compact_mb"] < report["full_mb"] / 10


def test_bad_arguments_are_refused_with_what_to_give() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "kill9", "--kills", "0"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "--kills: must be a whole number > 0, not '0'" in done.stderr
