"""What a new user of ``im-task worker`` and ``im-task queue`` meets: warnings they see, names they can copy,
counts by state, a worker that survives a full disk, tasks decoded from the project's directory."""

from __future__ import annotations

import json
import logging
import os
import resource
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
from im_task.response import OUTCOME_HEADER
from im_task.testing import serve_wsgi
from im_task.transports.base import TaskRequest
from im_task.transports.local import LocalTransport

SCRIPT = Path(sys.executable).with_name("im-task")


class Answers:
    """A WSGI app answering every task with one status, outcome header and body."""

    def __init__(self, status: int, outcome: str | None, body: bytes) -> None:
        self.answer = (status, outcome, body)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status, outcome, body = self.answer
        headers = [("Content-Type", "text/plain")] + ([(OUTCOME_HEADER, outcome)] if outcome else [])
        start_response(f"{status} Whatever", headers)
        return [body]


def run(
    *args: str, cwd: Path | None = None, script: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = python_env()
    env.pop("IM_TASK_DATA_DIR", None)
    env.pop("IM_TASK_SECRET", None)
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "im_task"]
    return subprocess.run(
        [*command, *args], check=False, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


def enqueue(db: Path, *names: str, queue: str = "default") -> None:
    with LocalTransport(db, autostart=False) as transport:
        for name in names:
            transport.enqueue(TaskRequest(queue=queue, url=f"/_ah/task/m/{name}", body=b"x", name=name))


# -- the worker's log --------------------------------------------------------


def test_importing_the_local_queue_keeps_pythons_warnings_on_stderr() -> None:
    code = "import logging, im_task.transports.local; logging.getLogger('im_task.local').warning('seen on stderr')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), check=False)
    assert done.stderr.strip() == "seen on stderr"


def test_the_worker_shows_a_refusal_with_the_full_url(db: Path) -> None:
    enqueue(db, "lost")
    with serve_wsgi(Recorder(statuses=[404, 404, 404])) as url:
        done = run("worker", "--target", f"{url}/wrong", "--db", str(db), "--until-empty")
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "WARNING" in line and "nothing answers" in line]
    assert f"nothing answers at {url}/wrong/_ah/task/m/lost" in line
    assert "?." not in line
    assert "0 done, 0 failed, 0 gave-up, 0 dropped (1 attempt retried)" in done.stdout


def test_the_worker_logs_retries_only_with_verbose(db: Path) -> None:
    enqueue(db, "flaky")
    with serve_wsgi(Recorder(statuses=[500])) as url:
        quiet = run("worker", "--target", url, "--db", str(db), "--until-empty", "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "retry" not in quiet.stderr
    enqueue(db, "flaky-2")
    with serve_wsgi(Recorder(statuses=[500])) as url:
        verbose = run("worker", "--target", url, "--db", str(db), "--until-empty", "--quiet", "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO im_task.local: Task flaky" in verbose.stderr
    assert f"(POST {url}/_ah/task/m/flaky" in verbose.stderr


APP_THAT_LOGS = """
import logging, sys
logging.basicConfig(stream=sys.stdout, format="app-log %(levelname)s %(message)s")
from im_task.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_worker_does_not_print_twice_when_the_app_logs(db: Path, tmp_path: Path) -> None:
    enqueue(db, "refused")
    script = tmp_path / "app_worker.py"
    script.write_text(APP_THAT_LOGS)
    with serve_wsgi(Recorder(statuses=[403])) as url:
        done = subprocess.run(
            [sys.executable, str(script), "worker", "--target", url, "--db", str(db), "--until-empty", "--quiet"],
            capture_output=True,
            text=True,
            env=python_env(),
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert next(line for line in done.stdout.splitlines() if "same secret" in line).startswith("app-log WARNING")
    assert "same secret" not in done.stderr  # the app's handler printed it, the command's did not


def test_a_task_asking_for_a_retry_is_no_refusal(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = Answers(408, "retry", b"Failed this attempt; the queue will retry it.\n")
    with caplog.at_level(logging.INFO, logger="im_task.local"), LocalTransport(db, target=app) as transport:
        transport.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"x", name="singular"))
        deadline = time.monotonic() + 10
        while transport.task("singular")[0].info.last_status is None and time.monotonic() < deadline:
            time.sleep(0.01)
        transport.stop()
        [detail] = transport.task("singular")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("asked to be retried" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert detail.info.last_error == "HTTP 408: the task asked to be retried"
    assert "TIMEOUT" not in (detail.error_detail or "")


# -- a full disk ---------------------------------------------------------------

WORKER_THAT_MAY_NOT_GROW_FILES = """
import signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past RLIMIT_FSIZE fails with EFBIG, as on a full disk
from im_task.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_worker_survives_a_full_disk_and_a_stop(db: Path, tmp_path: Path) -> None:
    with LocalTransport(db, autostart=False) as transport:
        for i in range(2000):
            transport.enqueue(TaskRequest(queue="default", url=f"/_ah/task/m/f{i}", body=b"x" * 200))
    if not hasattr(resource, "prlimit"):
        pytest.skip("needs resource.prlimit (Linux) to fill the disk of a running worker")
    script = tmp_path / "limited_worker.py"
    script.write_text(WORKER_THAT_MAY_NOT_GROW_FILES)
    with serve_wsgi(Recorder(delay=0.1)) as url:  # deliveries in flight when the writes start to fail
        proc = subprocess.Popen(
            [sys.executable, str(script), "worker", "--target", url, "--db", str(db), "--lease", "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=python_env(),
        )
        lines: list[str] = []
        assert proc.stderr is not None
        reader = threading.Thread(target=lines.extend, args=(proc.stderr,), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 30
            while not any("starting" in line or "delivering" in line for line in lines) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # some tasks delivered and recorded
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))  # the disk is full
            while not any("cannot write" in line for line in lines) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert any("cannot write" in line for line in lines), "".join(lines)
            time.sleep(0.3)  # the deliveries in flight end: their outcomes wait to be recorded
            proc.send_signal(signal.SIGTERM)  # stop while the outcomes cannot be recorded
            out, _ = proc.communicate(timeout=30)
            reader.join(5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "OverflowError" not in err, err
    assert "Traceback" not in err, err
    # Mostly the writes keep failing and the stop gives up after --lease ("could not record the last deliveries");
    # now and then SQLite reuses room already in its write-ahead log and records them. Either way it ends cleanly.
    assert sum("cannot write" in line for line in lines) <= 3, err  # no line a turn while stopping
    assert "still queued" in out


# -- queue list and show -------------------------------------------------------


def test_queue_list_shows_whole_names_in_dead_lists_order(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_name = "send-the-monthly-report-to-every-customer-of-the-shop-2026-11"
    enqueue(db, long_name, queue="reports")
    assert main(["queue", "list", "--db", str(db)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["QUEUE", "NAME", "STATE"]
    assert row.split()[:2] == ["reports", long_name]


def test_queue_show_takes_a_unique_start_of_a_name(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enqueue(db, "report-alpha", "report-beta", "mail-1")
    assert main(["queue", "show", "report-a", "--db", str(db)]) == 0
    assert "name:        report-alpha" in capsys.readouterr().out
    assert main(["queue", "show", "report", "--db", str(db)]) == 1
    assert (
        "2 tasks have a name starting with 'report' (report-alpha, report-beta); give more" in capsys.readouterr().err
    )
    assert main(["queue", "show", "nothing", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "no task named 'nothing'" in err
    for cause in ("purged", "name retention", "--db", "queue list"):
        assert cause in err


def test_a_dropped_task_says_why_in_the_json_list(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = Answers(200, "dropped", b"Task dropped: its payload cannot be decoded\n")
    with LocalTransport(db, target=app) as transport:
        transport.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"x", name="undecodable"))
        assert transport.join(10)
        assert transport.stats().ended == {"dropped": 1}
    assert main(["queue", "list", "--db", str(db), "--json"]) == 0
    [task] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert task["state"] == "dropped"
    assert "Task dropped: its payload cannot be decoded" in task["last_error"]
    assert main(["queue", "stats", "--db", str(db)]) == 0
    assert "gave-up 0, dropped 1" in capsys.readouterr().out


def test_the_worker_counts_tasks_by_the_state_they_end_in(db: Path) -> None:
    enqueue(db, "one", "two")
    with serve_wsgi(Answers(200, "failed", b"Failed permanently; not retried.\n")) as url:
        done = run("worker", "--target", url, "--db", str(db), "--until-empty", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "0 done, 2 failed, 0 gave-up, 0 dropped (0 attempts retried)" in done.stdout


def test_queue_show_from_the_project_directory_decodes_its_tasks(tmp_path: Path) -> None:
    if not SCRIPT.exists():
        pytest.skip(f"the im-task script is not installed next to {sys.executable}")
    (tmp_path / "shop_tasks.py").write_text("from im_task import task\n\n@task\ndef bill(order):\n    return order\n")
    enqueuer = "import shop_tasks\nprint(shop_tasks.bill(42).name)\n"
    made = subprocess.run(
        [sys.executable, "-c", enqueuer], cwd=tmp_path, capture_output=True, text=True, env=_env(), check=False
    )
    assert made.returncode == 0, made.stderr
    name = made.stdout.split()[-1]
    shown = run("queue", "show", name, cwd=tmp_path, script=True)
    assert shown.returncode == 0, shown.stderr
    assert "function:    shop_tasks.bill" in shown.stdout
    assert "arguments:   (42,), {}" in shown.stdout
    assert "development secret" not in shown.stderr  # a read-only command: no warning about signing


def test_queue_show_setup_imports_the_apps_configuration(tmp_path: Path) -> None:
    secret = "a-test-secret-of-32-or-more-bytes-for-setup"
    (tmp_path / "shop_tasks.py").write_text("from im_task import task\n\n@task\ndef bill(order):\n    return order\n")
    (tmp_path / "shop_settings.py").write_text(f"from im_task import configure\nconfigure(secret={secret!r})\n")
    enqueuer = "import shop_settings, shop_tasks\nprint(shop_tasks.bill(7).name)\n"
    made = subprocess.run(
        [sys.executable, "-c", enqueuer], cwd=tmp_path, capture_output=True, text=True, env=_env(), check=False
    )
    assert made.returncode == 0, made.stderr
    name = made.stdout.split()[-1]
    unverified = run("queue", "show", name, cwd=tmp_path)
    assert "not decoded" in unverified.stdout
    shown = run("queue", "show", name, "--setup", "shop_settings", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "arguments:   (7,), {}" in shown.stdout
    missing = run("queue", "show", name, "--setup", "no_such_settings", cwd=tmp_path)
    assert missing.returncode == 1
    assert "cannot import --setup no_such_settings" in missing.stderr


def _env() -> dict[str, str]:
    env = python_env()
    env.pop("IM_TASK_DATA_DIR", None)
    env.pop("IM_TASK_SECRET", None)
    env["IM_TASK_TRANSPORT"] = "local"
    return env


def test_the_secret_warning_is_printed_once_by_the_worker(tmp_path: Path) -> None:
    db = tmp_path / ".im_task" / "queue.sqlite3"
    enqueue(db, "x")
    with serve_wsgi(Recorder()) as url:
        done = run("worker", "--target", url, "--until-empty", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("development secret") <= 1
    listed = run("queue", "list", cwd=tmp_path)
    assert "development secret" not in listed.stderr
    assert os.path.exists(db)
