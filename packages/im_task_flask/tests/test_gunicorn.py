"""A Flask app served by gunicorn, the server the deployment docs name: what the docs say of it holds.

gunicorn runs here as in production: a master process that imports the app
(``--preload``) and forks two sync workers. The tasks travel on the local
queue, which each worker opens on its own after the fork, and run in the
worker that claims them. The security docs say that gunicorn (22 and later)
drops header names spelt with underscores, so that ``X_AppEngine_QueueName``
cannot pass for the queue's header; the last test sends one.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from im_task_testsupport.processes import python_env

gunicorn = pytest.importorskip("gunicorn", reason="gunicorn is not installed (the tests session installs it)")
if sys.platform == "win32":  # pragma: no cover - gunicorn runs on Unix only
    pytest.skip("gunicorn runs on Unix only", allow_module_level=True)

#: The app's secret: a configured one, as in production (32 bytes of variety).
SECRET = "gunicorn-test-6f1c9e2a8b4d7f3e5a0c1b9d8e7f6a5b"

APP = """
import os
from pathlib import Path

from flask import Flask

from im_task import task
from im_task_flask import ImTask

app = Flask("gunicorn_app")
app.config["IM_TASK_SECRET"] = os.environ["GUNICORN_APP_SECRET"]
app.config["IM_TASK_DATA_DIR"] = os.environ["GUNICORN_APP_DATA"]
ImTask(app)  # the local queue, delivering to this app in the worker that claims a task
RAN = Path(os.environ["GUNICORN_APP_RAN"])


@task
def record(number: int) -> None:
    # One file per run, named by the number and the worker: a task run twice leaves two files
    (RAN / f"{number}.{os.getpid()}.{os.urandom(4).hex()}").touch()


@app.post("/enqueue/<int:number>")
def enqueue(number: int) -> str:
    record(number)
    return str(os.getpid())
"""


@dataclass
class Served:
    """A running gunicorn: its base URL, master process, and where the app writes."""

    url: str
    master: subprocess.Popen[str]
    ran: Path
    env: dict[str, str]
    app_dir: Path


def _environment(tmp_path: Path) -> dict[str, str]:
    env = python_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "app"), env["PYTHONPATH"]])
    env.update(
        GUNICORN_APP_SECRET=SECRET,
        GUNICORN_APP_DATA=str(tmp_path / "data"),
        GUNICORN_APP_RAN=str(tmp_path / "ran"),
    )
    return {name: value for name, value in env.items() if not name.startswith("IM_TASK_")}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """gunicorn serving the app on a socket bound here (no race for a port), stopped however the test ends."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "gunicorn_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "ran").mkdir()
    env = _environment(tmp_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--bind", f"fd://{listener.fileno()}"]
    command += ["--graceful-timeout", "5", "--log-level", "warning", "gunicorn_app:app"]
    master = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        pass_fds=[listener.fileno()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    listener.close()  # gunicorn has its own copy
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_serving(url, master)
        yield Served(url, master, tmp_path / "ran", env, tmp_path / "app")
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            master.kill()
            master.communicate()


def _wait_until_serving(url: str, master: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if master.poll() is not None:
            _, errors = master.communicate()
            raise AssertionError(f"gunicorn exited with {master.returncode}:\n{errors}")
        try:
            urllib.request.urlopen(f"{url}/", timeout=2)
        except urllib.error.HTTPError:
            return  # a 404: the workers answer
        except OSError:
            time.sleep(0.1)
            continue
        return
    raise AssertionError("gunicorn did not answer within 30 seconds.")


def _post(url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _runs(ran: Path) -> list[tuple[int, int]]:
    """The (number, worker pid) of every run the app recorded."""
    return [(int(path.name.split(".")[0]), int(path.name.split(".")[1])) for path in ran.iterdir()]


def test_tasks_enqueued_in_forked_workers_run_once_each_on_the_local_queue(served: Served) -> None:
    served_by = {_post(f"{served.url}/enqueue/{number}")[1] for number in range(40)}
    deadline = time.monotonic() + 30
    while len(_runs(served.ran)) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    runs = _runs(served.ran)
    assert sorted(number for number, _ in runs) == list(range(40))  # each once, none lost
    workers = {pid for _, pid in runs}
    assert served.master.pid not in workers  # the workers ran them, each with a queue of its own
    assert all(pid.isdigit() and int(pid) != served.master.pid for pid in served_by)  # forked workers answered


def _signed_task(served: Served) -> tuple[str, bytes]:
    """A task of the app's, signed with its secret, made in another process (its path and envelope)."""
    code = """
        import base64, json
        from im_task import configure
        from im_task.transports import RecordingTransport
        import gunicorn_app
        recorder = RecordingTransport()
        configure(transport=recorder)
        gunicorn_app.record(7)
        (request,) = recorder.requests
        print(json.dumps({"url": request.url, "body": base64.b64encode(request.body).decode()}))
        """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=served.env,
        cwd=served.app_dir,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout.strip().splitlines()[-1])
    return made["url"], base64.b64decode(made["body"])


def test_queue_headers_spelt_with_underscores_never_reach_the_app(served: Served) -> None:
    path, body = _signed_task(served)
    underscored = {"X_AppEngine_QueueName": "default", "X_AppEngine_TaskName": "spelt-otherwise"}
    status, text = _post(served.url + path, body, {**underscored, "Content-Type": "application/octet-stream"})
    assert (status, text) == (403, "Forbidden: not a task queue request.\n")
    assert _runs(served.ran) == []
    # The same task with the headers spelt as a queue spells them runs (development accepts any caller)
    dashed = {"X-AppEngine-QueueName": "default", "X-AppEngine-TaskName": "spelt-right"}
    status, text = _post(served.url + path, body, {**dashed, "Content-Type": "application/octet-stream"})
    assert (status, text) == (200, "OK\n")
    assert [number for number, _ in _runs(served.ran)] == [7]
