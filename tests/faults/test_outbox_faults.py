"""The outbox's fault injection (``outbox_faults.py``) at a small size: kills at every phase, racing sweepers.

``nox -s faults`` runs the same script at full size (240 kills, thousands of
orders, SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).with_name("outbox_faults.py")
SMALL = ["--kills", "12", "--orders-per-kill", "4", "--extra-orders", "60", "--long-transactions", "2"]


def run_faults(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *SMALL, "--json", *args], capture_output=True, text=True, timeout=100, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(("{", "SKIPPED"))]
    assert lines, f"no report (status {done.returncode}):\n{done.stdout}\n{done.stderr}"
    if lines[-1].startswith("SKIPPED"):
        pytest.skip(lines[-1])
    report: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == (0 if report["ok"] else 1), done.stderr
    return report


def check(report: dict[str, Any]) -> None:
    assert sum(report["kills"].values()) >= 12, report  # every enqueuer died at its phase
    assert set(report["kills"]) == {
        "in_transaction",
        "before_claim",
        "after_claim",
        "in_send",
        "after_send",
        "after_mark",
    }
    assert report["committed"] > 50
    assert report["lost"] == 0, report
    assert report["phantoms"] == 0, report
    assert report["duplicates_other"] == 0, report  # no race, slow send, long transaction or killed connection
    assert report["duplicates"] == 0, report  # kills after the send included: the endpoint marked their rows
    assert report["failed_deliveries"] == 0, report
    assert report["runs"] == report["committed"]
    assert report["long_transactions"] == 2
    assert report["ok"]


@pytest.mark.timeout(110)
def test_sqlite_with_a_queue_that_accepts_reused_names() -> None:
    report = run_faults("--database", "sqlite")
    check(report)
    assert report["marked_on_delivery"] >= report["kills"]["after_send"]  # the window the sender cannot close


@pytest.mark.timeout(110)
def test_without_the_endpoint_s_delivery_marks_a_kill_after_the_send_runs_the_task_twice() -> None:
    """The control: the harness sees the duplicates the endpoint's marks prevent."""
    report = run_faults("--database", "sqlite", "--without-delivery-marks")
    assert report["duplicates_ambiguous"] == report["kills"]["after_send"] > 0, report
    assert report["duplicates_other"] == 0, report
    assert not report["ok"]


@pytest.mark.timeout(110)
def test_sqlite_with_a_queue_that_refuses_reused_names() -> None:
    report = run_faults("--database", "sqlite", "--refuse-names")
    check(report)
    assert report["duplicates"] == 0, report


@pytest.mark.timeout(110)
def test_postgresql_with_a_queue_that_accepts_reused_names() -> None:
    report = run_faults("--database", "postgresql")  # skips when no PostgreSQL server can be started here
    check(report)
