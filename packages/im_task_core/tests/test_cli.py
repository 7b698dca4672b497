"""The im-task command: worker, queue list/stats/purge, usage errors."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport.processes import python_env
from im_task_testsupport.wsgi_apps import Recorder

from im_task.cli import main
from im_task.retry import RetryPolicy
from im_task.testing import serve_wsgi
from im_task.transports.base import TaskRequest
from im_task.transports.local import LocalTransport


def cli(*args: str, cwd: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = python_env()
    env.pop("IM_TASK_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "im_task.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def fill(db: Path, count: int = 3, **kwargs: Any) -> list[str]:
    with LocalTransport(db, autostart=False) as transport:
        return [
            transport.enqueue(TaskRequest(queue="default", url=f"/_ah/task/m/f{i}", body=b"x", **kwargs))
            for i in range(count)
        ]


def test_worker_until_empty_delivers_to_a_real_server(db: Path) -> None:
    names = fill(db, 5)
    app = Recorder(statuses=[500])
    with serve_wsgi(app) as url:
        result = cli(
            "worker", "--target", url, "--db", str(db), "--concurrency", "2", "--until-empty", "--wait-scheduled"
        )
    assert result.returncode == 0, result.stderr
    assert sorted(set(app.names())) == sorted(names)
    assert len(app.names()) == 6
    assert "5 done, 0 failed, 0 gave-up, 0 dropped (1 attempt retried)" in result.stdout
    assert "delivering tasks from" in result.stderr
    with LocalTransport(db, autostart=False) as transport:
        assert transport.stats().done == 5


def test_worker_in_process_main_and_quiet(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(db, 2)
    app = Recorder()
    with serve_wsgi(app) as url:
        code = main(["worker", "--target", url, "--db", str(db), "--until-empty", "--quiet"])
    assert code == 0
    out, err = capsys.readouterr()
    assert "2 done" in out
    assert err == ""
    assert len(app.names()) == 2


def test_worker_stops_cleanly_on_sigint_and_sigterm(db: Path) -> None:
    env = python_env()
    app = Recorder()
    with serve_wsgi(app) as url:
        for sig in (signal.SIGINT, signal.SIGTERM):
            proc = subprocess.Popen(
                [sys.executable, "-m", "im_task.cli", "worker", "--target", url, "--db", str(db), "--interval", "0.1"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            lines: list[str] = []
            assert proc.stderr is not None
            reader = threading.Thread(target=lines.extend, args=(proc.stderr,), daemon=True)
            reader.start()
            try:
                fill(db, 1)
                deadline = time.monotonic() + 10
                while not any("done 1 " in line for line in lines) and time.monotonic() < deadline:
                    time.sleep(0.02)
                proc.send_signal(sig)
                proc.wait(timeout=10)
                reader.join(5)
                assert proc.stdout is not None
                out = proc.stdout.read()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()  # type: ignore[union-attr]
                proc.stderr.close()
            err = "".join(lines)
            assert proc.returncode == 0, err
            assert "delivering tasks from" in lines[0]
            assert "1 done, 0 failed, 0 gave-up, 0 dropped (0 attempts retried) | queued" in err  # the progress line
            assert "stopping" in err
            assert "1 done, 0 failed, 0 gave-up, 0 dropped (0 attempts retried)" in out
        assert len(app.names()) == 2


def test_worker_bad_target(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--target", "ftp://example.com", "--db", str(db)]) == 2
    assert "--target must be the app's base URL" in capsys.readouterr().err
    assert main(["worker", "--db", str(db)]) == 2  # --target is required
    assert "--target" in capsys.readouterr().err
    assert main(["worker", "--target", "http://x", "--concurrency", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["worker", "--target", "http://x", "--db", str(db), "--wait-scheduled"]) == 2
    assert "--until-empty" in capsys.readouterr().err


def test_queue_list_table_and_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = fill(db, 2)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
    with LocalTransport(db, autostart=False) as transport:
        transport.enqueue(TaskRequest(queue="mail", url="/later", body=b"x", name="later-1", schedule_time=later))
    result = cli("queue", "list", "--db", str(db))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["QUEUE", "NAME", "STATE", "ATTEMPTS", "DUE", "URL", "LAST"]
    assert len(lines) == 4
    assert names[0] in lines[1]
    assert "queued" in lines[1]
    assert "now" in lines[1]
    assert "/_ah/task/m/f0" in lines[1]
    assert lines[3].split()[:5] == ["mail", "later-1", "queued", "0", "in"]
    assert main(["queue", "list", "--db", str(db), "--queue", "mail", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["name"] == "later-1"
    assert row["state"] == "queued"
    assert row["url"] == "/later"
    assert main(["queue", "list", "--db", str(db), "--state", "failed"]) == 0
    assert capsys.readouterr().out.strip() == "No tasks."
    assert main(["queue", "list", "--db", str(db), "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_queue_list_shows_failures(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = Recorder(statuses=[503])
    with LocalTransport(db, target=app, default_policy=RetryPolicy(max_attempts=1)) as transport:
        transport.enqueue(TaskRequest(queue="default", url="/x", body=b"", name="broken"))
        assert transport.join(5)
    assert main(["queue", "list", "--db", str(db)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.split()[:4] == ["default", "broken", "gave-up", "1"]
    assert "HTTP 503" in line
    assert "ago" in line


def test_queue_stats(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(db, 3)
    assert main(["queue", "stats", "--db", str(db)]) == 0
    assert "queued 3 (due now 3), running 0, done 0, failed 0" in capsys.readouterr().out


def test_queue_purge_needs_yes(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(db, 3)
    assert main(["queue", "purge", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "refusing to delete 3 queued task(s)" in err
    assert "--yes" in err
    with LocalTransport(db, autostart=False) as transport:
        assert transport.stats().queued == 3
    result = cli("queue", "purge", "--db", str(db), "--queue", "default", "--yes")
    assert result.returncode == 0, result.stderr
    assert "Deleted 3 task(s)." in result.stdout
    with LocalTransport(db, autostart=False) as transport:
        assert transport.stats().queued == 0


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("queue", "list", cwd=tmp_path)
    assert result.returncode == 1
    assert "no queue database at .im_task" in result.stderr
    assert "--db" in result.stderr
    assert not (tmp_path / ".im_task").exists()


def test_help_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "worker" in out
    assert "queue" in out
    assert main(["worker", "--help"]) == 0
    assert "--until-empty" in capsys.readouterr().out
    assert main(["queue", "purge", "--help"]) == 0
    assert "--yes" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["queue"]) == 2
    assert main(["bogus"]) == 2
    assert main(["queue", "list", "--state", "bogus"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_sweep_without_an_outbox_fails_saying_how_to_install_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep"]) == 1
    assert "No outbox to sweep" in capsys.readouterr().err


SWEEP_SETUP = """
from im_task import configure
from im_task.transactions import register_binder


class Outbox:
    def purge_sent(self):
        return 2

    def due(self, older_than, after, limit):
        return []


class Binder:
    description = "a test outbox"
    outbox_storage = Outbox()

    def in_transaction(self):
        return False


configure(transport="recording")
BINDER = Binder()
register_binder(BINDER)
"""


def test_sweep_imports_the_setup_and_prints_the_counts_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from im_task.transactions import unregister_binder

    (tmp_path / "cli_sweep_setup.py").write_text(SWEEP_SETUP, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["sweep", "--setup", "cli_sweep_setup", "--older-than", "0"]) == 0
        counts = json.loads(capsys.readouterr().out)
        assert counts == {"already_sent": 0, "failed": 0, "purged": 2, "sent": 0, "taken": 0}
    finally:
        unregister_binder(sys.modules.pop("cli_sweep_setup").BINDER)
    assert main(["sweep", "--setup", "no_such_setup_module"]) == 1
    assert "cannot import --setup no_such_setup_module" in capsys.readouterr().err


def test_the_documented_defaults() -> None:
    """docs/cli.md: --concurrency 8, --dispatch-deadline 600, list --limit 50, purge --state queued, sweep 60 s."""
    from im_task.cli import _parser

    parser = _parser()
    worker = parser.parse_args(["worker", "--target", "http://127.0.0.1:8000"])
    assert (worker.concurrency, worker.dispatch_deadline, worker.interval) == (8, 600.0, None)
    assert parser.parse_args(["queue", "list"]).limit == 50
    assert parser.parse_args(["queue", "purge"]).state == "queued"
    sweep = parser.parse_args(["sweep"])
    assert (sweep.older_than, sweep.limit, sweep.payloads, sweep.ndb) == (60.0, None, None, None)
    assert parser.parse_args(["sweep", "--ndb"]).ndb == "_ImTaskOutbox"
