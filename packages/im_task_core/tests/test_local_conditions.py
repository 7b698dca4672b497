"""The local queue under bad conditions: work from other processes, limits, short leases, a full disk, a damaged file.

Real files and real subprocesses: the other process enqueues through its own
connection, the full disk is the child's file size limit (``RLIMIT_FSIZE``,
which makes SQLite's writes fail as they do on a full disk), and the damaged
file has garbage written over its pages.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport.processes import python_env, run_python
from im_task_testsupport.wsgi_apps import ConcurrencyProbe, Recorder, request

from im_task.cli import main
from im_task.errors import ConfigurationError, Error
from im_task.testing import serve_wsgi
from im_task.transports.local import LocalTransport
from im_task.transports.local.models import QueueLimits
from im_task.transports.local.store import TaskStore, is_disk_full, write_failure

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX resource limits and signals")


def wait_for(condition: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


# -- work from anywhere -------------------------------------------------------


def test_a_registered_target_delivers_what_another_process_enqueues_within_a_second(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app) as transport:  # a server that enqueues nothing itself
        assert transport.running
        time.sleep(0.3)  # idle for a while first
        result = run_python(
            f"""
            import time
            from im_task.transports.base import TaskRequest
            from im_task.transports.local import LocalTransport
            with LocalTransport({str(db)!r}, autostart=False) as queue:
                queue.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"x", name="from-a-script"))
                print(time.time())
            """
        )
        assert result.returncode == 0, result.stderr
        enqueued = float(result.stdout)
        assert wait_for(lambda: app.calls, timeout=5)
        assert app.names() == ["from-a-script"]
        latency = app.calls[0]["time"] - time.monotonic() + time.time() - enqueued
        assert latency < 1.0, f"delivered {latency:.2f} s after another process enqueued it"


@posix_only
def test_a_dispatcher_waiting_for_other_processes_uses_little_cpu(db: Path) -> None:
    result = run_python(
        f"""
        import resource, time
        from im_task.transports.local import LocalTransport
        def app(environ, start_response):
            start_response("200 OK", [])
            return []
        with LocalTransport({str(db)!r}, target=app) as queue:
            assert queue.running
            time.sleep(0.5)
            before = resource.getrusage(resource.RUSAGE_SELF)
            time.sleep(4)
            after = resource.getrusage(resource.RUSAGE_SELF)
        print((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        """
    )
    assert result.returncode == 0, result.stderr
    cpu = float(result.stdout)
    assert cpu < 0.2, f"an idle dispatcher used {cpu:.3f} s of CPU in 4 s"


# -- queue limits ---------------------------------------------------------------


def test_a_queue_rate_limit_spreads_its_dispatches_and_leaves_other_queues_alone(db: Path) -> None:
    app = Recorder()
    limits = {"slow": QueueLimits(max_dispatches_per_second=5)}
    with LocalTransport(db, target=app, autostart=False, queue_limits=limits) as transport:
        transport.enqueue_many([request(f"slow-{i}", queue="slow") for i in range(15)])
        transport.enqueue_many([request(f"fast-{i}", queue="fast") for i in range(15)])
        started = time.monotonic()
        transport.start()
        assert transport.join(20)
    times = {c["headers"]["x-appengine-taskname"]: c["time"] - started for c in app.calls}
    slow = sorted(t for name, t in times.items() if name.startswith("slow"))
    fast = sorted(t for name, t in times.items() if name.startswith("fast"))
    assert len(slow) == len(fast) == 15
    assert fast[-1] < 0.5  # not held up behind the slow queue
    assert slow[4] < 0.5  # a second's worth goes at once...
    assert 1.6 < slow[-1] < 4.0  # ...then five a second


def test_a_queue_concurrency_limit_caps_its_deliveries_in_flight(db: Path) -> None:
    probe = ConcurrencyProbe(hold=0.05)
    limits = {"narrow": QueueLimits(max_concurrent_dispatches=2)}
    with LocalTransport(db, target=probe, concurrency=8, autostart=False, queue_limits=limits) as transport:
        transport.enqueue_many([request(queue="narrow") for _ in range(12)])
        transport.start()
        assert transport.join(20)
    assert probe.peak == 2


def test_queue_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_dispatches_per_second must be a number > 0"):
        QueueLimits(max_dispatches_per_second=0)
    with pytest.raises(ValueError, match="max_concurrent_dispatches must be a whole number >= 1"):
        QueueLimits(max_concurrent_dispatches=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"queue_limits\['q'\] must be a QueueLimits"):
        LocalTransport(queue_limits={"q": 5})  # type: ignore[dict-item]
    assert QueueLimits() == QueueLimits(500.0, 1000)  # Cloud Tasks' defaults


# -- leases ---------------------------------------------------------------------


@posix_only
def test_a_short_worker_lease_is_renewed_in_flight_and_recovers_quickly_after_kill_9(db: Path, tmp_path: Path) -> None:
    slow = Recorder(delay=30)
    with serve_wsgi(slow) as url:
        with LocalTransport(db, autostart=False) as queue:
            queue.enqueue(request("long-one"))
        worker = subprocess.Popen(
            [sys.executable, "-m", "im_task.cli", "worker", "--target", url, "--db", str(db), "--lease", "1", "-q"],
            env=python_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert slow.entered.wait(20)
            other = Recorder()
            with LocalTransport(db, target=other, lease_duration=1) as rival:
                time.sleep(3)  # three leases long: the worker renews its own, so nothing is taken
                assert other.calls == []
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                killed = time.monotonic()
                assert wait_for(lambda: other.calls, timeout=10)
                recovered = other.calls[0]["time"] - killed
                assert rival.join(10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
    assert recovered < 3.0, f"the killed worker's task waited {recovered:.1f} s"
    assert other.calls[0]["headers"]["x-appengine-taskretryreason"] == "LEASE_EXPIRED"


def test_the_worker_lease_option_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--target", "http://127.0.0.1:9", "--lease", "0"]) == 2
    assert "--lease" in capsys.readouterr().err


# -- a full disk -------------------------------------------------------------------


@posix_only
def test_a_full_disk_pauses_the_dispatcher_with_a_growing_backoff_and_then_it_recovers(db: Path) -> None:
    with LocalTransport(db, autostart=False) as queue:
        queue.enqueue_many([request(f"t-{i}", body=b"x" * 2000) for i in range(300)])
    code = textwrap.dedent(
        f"""
        import json, logging, os, resource, signal, time
        from im_task.transports.local import LocalTransport
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        lines = []
        class Keep(logging.Handler):
            def emit(self, record):
                lines.append((record.levelname, record.getMessage()))
        logging.getLogger("im_task.local").addHandler(Keep())
        logging.getLogger("im_task.local").setLevel(logging.INFO)
        seen = []
        def app(environ, start_response):
            seen.append(environ["HTTP_X_APPENGINE_TASKNAME"])
            start_response("200 OK", [])
            return []
        db = {str(db)!r}
        queue = LocalTransport(db, target=app, autostart=False, concurrency=4, lease_duration=3)  # renewals fail too
        biggest = max(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 8192, hard))
        before = resource.getrusage(resource.RUSAGE_SELF)
        queue.start()
        time.sleep(6)
        after = resource.getrusage(resource.RUSAGE_SELF)
        stuck = len(lines)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
        drained = queue.join(30)
        stats = queue.stats()
        queue.close()
        print(json.dumps({{
            "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "lines": lines[:stuck], "later": lines[stuck:], "drained": drained, "done": stats.done,
            "queued": stats.queued, "seen": len(set(seen)),
        }}))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=python_env(), check=False
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    errors = [message for level, message in report["lines"] if level == "ERROR"]
    assert 2 <= len(errors) <= 4, errors  # 1 s, 2 s, 4 s...: not thousands of tracebacks
    assert all("cannot write" in message and "ulimit -f" in message for message in errors)
    assert [m.rsplit("again in ", 1)[1] for m in errors[:3]] == ["1 s.", "2 s.", "4 s."][: len(errors[:3])]
    assert report["cpu"] < 1.0, f"{report['cpu']:.2f} s of CPU in 6 s of a full disk"
    assert report["drained"] is True
    assert (report["done"], report["queued"], report["seen"]) == (300, 0, 300)  # none lost
    assert any("can be written again" in message for _, message in report["later"])


def test_what_a_full_disk_error_says(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "small.sqlite3")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("PRAGMA max_page_count = 3")  # SQLite's own "database or disk is full"
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    conn.close()
    assert is_disk_full(caught.value)
    message = write_failure(tmp_path / "small.sqlite3", caught.value)
    assert message is not None
    assert "free" in message
    assert write_failure(tmp_path / "x", sqlite3.OperationalError("database is locked")) is None


# -- compaction ------------------------------------------------------------------


def test_a_mostly_free_file_is_vacuumed(db: Path) -> None:
    with LocalTransport(db, autostart=False) as queue:
        for start in range(0, 6000, 1000):
            queue.enqueue_many([request(f"t-{i}", body=os.urandom(1000)) for i in range(start, start + 1000)])
        assert queue.compact() is False  # nothing free yet
        full = db.stat().st_size
        assert queue.purge() == 6000
        assert queue.compact() is True
        assert queue.compact() is False
    assert full > 6_000_000
    assert db.stat().st_size < full / 10
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


# -- a damaged file -----------------------------------------------------------------


def _damaged(db: Path, *, header: bool = False, rows_only: bool = False) -> Path:
    """A queue file with tasks, then garbage over its header, over every page but the first, or over rows only.

    With ``rows_only`` the damage is in table pages that counting tasks (which
    reads an index) never reads: the file opens, and the dispatcher finds it.
    """
    with LocalTransport(db, autostart=False) as queue:
        queue.enqueue_many([request(f"t-{i}", body=os.urandom(1000)) for i in range(400)])
    store = TaskStore(db)
    store.compact()  # everything in the main file
    store.close()
    size = db.stat().st_size
    with db.open("r+b") as file:
        if header:
            file.seek(0)
            file.write(os.urandom(4096))
        elif rows_only:
            file.seek(4096 * 8)
            file.write(os.urandom(4096 * 40))
        else:
            file.seek(4096)
            file.write(os.urandom(size - 4096))
    return db


@pytest.mark.parametrize("header", [True, False], ids=["not-a-database", "malformed-pages"])
def test_a_damaged_file_is_a_clear_error_at_start_up(db: Path, header: bool) -> None:
    _damaged(db, header=header)
    with pytest.raises(ConfigurationError) as caught:
        LocalTransport(db)
    message = str(caught.value)
    assert str(db) in message
    assert "move it aside" in message
    assert ".recover" in message


@pytest.mark.parametrize("header", [True, False], ids=["not-a-database", "malformed-pages"])
def test_a_damaged_file_is_a_clear_error_in_the_cli_and_the_worker(db: Path, header: bool) -> None:
    _damaged(db, header=header)
    for command in (["queue", "stats"], ["queue", "list"], ["worker", "--target", "http://127.0.0.1:9"]):
        result = subprocess.run(
            [sys.executable, "-m", "im_task.cli", *command, "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=60,
            env=python_env(),
            check=False,
        )
        assert result.returncode == 1, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("im-task: error: The local queue's database")
        assert str(db) in result.stderr
        assert "move it aside" in result.stderr


def test_reading_a_damaged_file_is_an_error_naming_it(db: Path) -> None:
    _damaged(db, rows_only=True)
    with LocalTransport(db, autostart=False) as queue, pytest.raises(Error, match="move it aside"):
        queue.tasks(limit=1000)


def test_the_dispatcher_logs_a_damaged_file_once_per_pause(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    _damaged(db, rows_only=True)
    app = Recorder()
    with caplog.at_level(logging.ERROR, logger="im_task.local"), LocalTransport(db, target=app) as queue:
        assert queue.running
        time.sleep(2.5)
        queue.stop(timeout=5)
    errors = [r.getMessage() for r in caplog.records if r.name == "im_task.local" and r.levelno == logging.ERROR]
    assert 1 <= len(errors) <= 3, errors  # at 0 s, 1 s, (3 s): not a tight loop
    assert all(str(db) in e and "move it aside" in e for e in errors)
