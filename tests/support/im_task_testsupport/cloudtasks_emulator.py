"""Google Cloud Tasks on 127.0.0.1: the ``gcloud-tasks-emulator`` package, run from its own cached virtual environment.

The emulator pins ``protobuf<5`` (so google-cloud-tasks resolves to 2.23
there), which cannot share a virtual environment with im-task's
google-cloud-tasks. It is a separate server process anyway, so this module
installs it once into a virtual environment of its own, kept between runs
(:func:`emulator_venv`), and runs it as a child process (:func:`run_emulator`):

- the venv lives in ``$GCLOUD_TASKS_EMULATOR_VENV`` if set, else in
  ``$XDG_CACHE_HOME/im-task/`` (``~/.cache/im-task/``), named after the
  emulator's version and the Python version; a file lock lets two test
  processes share it, and a marker written last says it is complete;
- the emulator listens on ``127.0.0.1`` only, on a port the system picks
  (the launcher reports it, so there is no race for a free port), and
  delivers App Engine tasks to ``http://TARGET_HOST:TARGET_PORT<relative_uri>``
  and HTTP tasks to their URL;
- it runs in its own process group and is killed with it when the ``with``
  block ends, however it ends; it also exits by itself when this process
  dies (its standard input closes);
- its log lines go to the ``gcloud-tasks-emulator`` logger (so pytest shows
  them under "Captured log" when a test fails) and are kept for error messages.

When the venv cannot be made (no network, no ``venv`` module),
:class:`EmulatorUnavailableError` says so in one line; tests skip with it,
unless ``REQUIRE_GCLOUD_TASKS_EMULATOR=1`` asks them to fail instead (for CI).
The failure is remembered for the rest of the process, so that pip is tried
once per run, not once per test.

The emulator differs from the service (see ``docs/emulator.md``): no task
name deduplication, no size limit, no backoff, one task at a time per queue,
retry and execution counts equal, OIDC tokens and routing ignored,
``BatchCreateTasks`` unimplemented. Tests must not depend on those.

Example:
    >>> with serve_wsgi(app) as base_url, run_emulator(target=base_url, queues=["default"]) as emulator:
    ...     transport = CloudTasksTransport(project=PROJECT, location=LOCATION, emulator_host=emulator.host)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from google.cloud.tasks_v2 import CloudTasksClient

__all__ = [
    "EMULATOR_REQUIREMENT",
    "LOCATION",
    "PROJECT",
    "REQUIRE_ENV",
    "VENV_ENV",
    "Emulator",
    "EmulatorUnavailableError",
    "emulator_command",
    "emulator_for_tests",
    "emulator_venv",
    "require_emulator",
    "run_emulator",
    "venv_dir",
]

#: The emulator release the tests and benchmarks run.
EMULATOR_VERSION = "0.6.2"
EMULATOR_REQUIREMENT = f"gcloud-tasks-emulator=={EMULATOR_VERSION}"
#: The project and location of the queues the emulator is started with.
PROJECT = "im-task-test"
LOCATION = "us-central1"
#: Set to ``1`` to make a missing emulator an error instead of a skip.
REQUIRE_ENV = "REQUIRE_GCLOUD_TASKS_EMULATOR"
#: Set to a directory to keep the emulator's venv there instead of in the user's cache.
VENV_ENV = "GCLOUD_TASKS_EMULATOR_VENV"

#: Seconds to wait for the venv lock, for pip, for the emulator to listen, and for it to stop.
LOCK_TIMEOUT = 900.0
PIP_TIMEOUT = 600.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

_MARKER = "im-task-complete"
_PORT_LINE = "IM_TASK_EMULATOR_PORT="

logger = logging.getLogger("gcloud-tasks-emulator")
logger.setLevel(logging.INFO)  # its lines reach pytest's log capture whatever the root logger's level

#: Runs in the emulator's venv: the emulator's own server, listening on 127.0.0.1 (the emulator's own
#: ``start`` command listens on every interface) on a port the system picks, which it prints; it exits
#: when its standard input closes, so that it never outlives the process that started it.
_LAUNCHER = """
import json, logging, os, sys, threading, warnings
from concurrent import futures
warnings.simplefilter("ignore", FutureWarning)
import grpc
from gcloud_tasks_emulator import server as emulator

config = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s")


class API(emulator.APIThread):
    def run(self):
        self._httpd = grpc.server(futures.ThreadPoolExecutor(max_workers=config["workers"]))
        emulator.add_CloudTasksServicer_to_server(emulator.Greeter(self._state), self._httpd)
        port = self._httpd.add_insecure_port(config["host"] + ":0")
        self._httpd.start()
        print(PORT_LINE + str(port), flush=True)


def exit_with_parent():
    sys.stdin.read()
    os._exit(0)


threading.Thread(target=exit_with_parent, daemon=True).start()
server = emulator.create_server(
    config["host"], 0, config["target_host"], config["target_port"], config["queues"], config["max_retries"]
)
server._api = API(server._state, config["host"], 0)
server.run()
""".replace("PORT_LINE", repr(_PORT_LINE))


class EmulatorUnavailableError(RuntimeError):
    """The emulator cannot be installed or started here; ``str()`` is one line saying what is missing."""


def require_emulator() -> bool:
    """Whether a missing emulator must fail the tests instead of skipping them (``REQUIRE_GCLOUD_TASKS_EMULATOR=1``)."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


# -- the virtual environment -----------------------------------------------------------------------


def venv_dir() -> Path:
    """Where the emulator's virtual environment is kept: ``$GCLOUD_TASKS_EMULATOR_VENV``, else the user's cache."""
    explicit = os.environ.get(VENV_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    python = f"py{sys.version_info.major}.{sys.version_info.minor}"
    return cache / "im-task" / f"gcloud-tasks-emulator-{EMULATOR_VERSION}-{python}"


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def emulator_command(venv: Path) -> Path:
    """The emulator's own ``gcloud-tasks-emulator`` command in a venv made by :func:`emulator_venv`."""
    return venv / ("Scripts/gcloud-tasks-emulator.exe" if os.name == "nt" else "bin/gcloud-tasks-emulator")


#: Why the venv could not be made in this process, once it failed: pip is tried once per run.
_failures: list[str] = []
_failure_lock = threading.Lock()


def emulator_venv() -> Path:
    """The emulator's virtual environment, made on first use and reused afterwards.

    Returns:
        The venv's directory.

    Raises:
        EmulatorUnavailableError: It cannot be made (pip or the network failed); the reason is
            remembered, so later calls in this process fail at once.
    """
    with _failure_lock:
        if _failures:
            raise EmulatorUnavailableError(_failures[0])
        venv = venv_dir()
        try:
            if not _complete(venv):
                with _locked(venv.with_name(venv.name + ".lock")):
                    if not _complete(venv):
                        _build(venv)
        except EmulatorUnavailableError as exc:
            _failures.append(str(exc))
            raise
        return venv


def _complete(venv: Path) -> bool:
    return (venv / _MARKER).is_file() and _python(venv).exists()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``path`` (created if needed), waiting at most :data:`LOCK_TIMEOUT`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock; two processes building at once is unlikely there
        yield
        return
    with open(path, "a+b") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmulatorUnavailableError(
                        f"gcloud-tasks-emulator: another process held {path} for over {LOCK_TIMEOUT:.0f}s"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _build(venv: Path) -> None:
    """Makes the venv afresh and installs the emulator into it; the marker file is written last."""
    if venv.exists():
        shutil.rmtree(venv)
    started = time.monotonic()
    logger.warning("Installing %s into %s (once; later runs reuse it).", EMULATOR_REQUIREMENT, venv)
    steps = [
        ("python -m venv", [sys.executable, "-m", "venv", str(venv)]),
        (
            f"pip install {EMULATOR_REQUIREMENT}",
            [
                str(_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                "--quiet", "--timeout", "30", "--retries", "2", EMULATOR_REQUIREMENT,
            ],
        ),
        ("import gcloud_tasks_emulator", [str(_python(venv)), "-c", "import gcloud_tasks_emulator.server"]),
    ]  # fmt: skip
    for what, command in steps:
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(venv, ignore_errors=True)
            raise EmulatorUnavailableError(
                f"gcloud-tasks-emulator could not be installed in {venv}: {what}: {exc}"
            ) from exc
        if result.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("ERROR")] or lines[-1:]
            raise EmulatorUnavailableError(
                f"gcloud-tasks-emulator could not be installed in {venv} ({what} failed, exit {result.returncode}"
                f"{'; no network?' if 'pip' in what else ''}): {errors[0] if errors else 'no output'}"
            )
    (venv / _MARKER).write_text(f"{EMULATOR_REQUIREMENT}\n{sys.executable}\n", encoding="utf-8")
    logger.warning("Installed %s in %.1fs.", EMULATOR_REQUIREMENT, time.monotonic() - started)


# -- the server --------------------------------------------------------------------------------------------


@dataclass
class Emulator:
    """A running emulator, made by :func:`run_emulator`.

    Attributes:
        host: Its gRPC address, ``"127.0.0.1:PORT"`` (what ``emulator_host=`` takes).
        target: Where it delivers App Engine tasks, ``"http://HOST:PORT"``.
        project: The project of its queues.
        location: The location of its queues.
        process: The emulator's process.
    """

    host: str
    target: str
    project: str
    location: str
    process: subprocess.Popen[str]
    _lines: list[str] = field(default_factory=list, repr=False)
    _client: CloudTasksClient | None = field(default=None, repr=False)

    @property
    def parent(self) -> str:
        """The location's resource name, ``projects/P/locations/L``."""
        return f"projects/{self.project}/locations/{self.location}"

    def queue_path(self, queue: str) -> str:
        """A queue's resource name."""
        return f"{self.parent}/queues/{queue}"

    def new_client(self) -> CloudTasksClient:
        """A new google-cloud-tasks client talking to the emulator over its own insecure gRPC channel."""
        import grpc
        from google.cloud.tasks_v2 import CloudTasksClient
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        return CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(self.host)))

    @property
    def client(self) -> CloudTasksClient:
        """One client of this emulator, made on first use and kept (the client is thread-safe)."""
        if self._client is None:
            self._client = self.new_client()
        return self._client

    def create_queues(self, *queues: str) -> None:
        """Creates queues (a queue that exists is left as it is)."""
        for queue in queues:
            self.client.create_queue(parent=self.parent, queue=self._queue(queue), timeout=10)

    def _queue(self, queue: str) -> Any:
        from google.cloud.tasks_v2 import Queue

        return Queue(name=self.queue_path(queue))

    def delete_queues(self, *queues: str) -> None:
        """Deletes queues and the tasks they still hold."""
        for queue in queues:
            self.client.delete_queue(name=self.queue_path(queue), timeout=10)

    def pause_queue(self, queue: str) -> None:
        """Stops a queue from dispatching; tasks are still accepted."""
        self.client.pause_queue(name=self.queue_path(queue), timeout=10)

    def purge_queue(self, queue: str) -> None:
        """Drops every task a queue holds."""
        self.client.purge_queue(name=self.queue_path(queue), timeout=10)

    def task_count(self, queue: str) -> int:
        """How many tasks a queue holds (not counting one being dispatched right now)."""
        return len(list(self.client.list_tasks(parent=self.queue_path(queue), timeout=10)))

    def wait_idle(self, queues: Iterable[str], timeout: float = 60.0, settle: float = 0.5) -> bool:
        """Waits until the queues hold no task and have held none for ``settle`` seconds.

        A task being dispatched is out of its queue until its answer comes (and back in it
        if it failed), hence the settling time.

        Returns:
            Whether they became idle within ``timeout`` seconds.
        """
        names = list(queues)
        deadline = time.monotonic() + timeout
        empty_since: float | None = None
        while time.monotonic() < deadline:
            if all(self.task_count(queue) == 0 for queue in names):
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since >= settle:
                    return True
            else:
                empty_since = None
            time.sleep(0.05)
        return False

    def log(self, last: int | None = None) -> str:
        """The emulator's output so far (its ``last`` lines if given)."""
        lines = list(self._lines)
        return "\n".join(lines if last is None else lines[-last:])

    def close_client(self) -> None:
        """Closes the kept client's channel, if one was made."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.transport.close()  # type: ignore[no-untyped-call]
            self._client = None


@contextmanager
def run_emulator(
    target: str,
    *,
    queues: Iterable[str] = ("default",),
    max_retries: int | None = None,
    workers: int = 16,
    project: str = PROJECT,
    location: str = LOCATION,
    start_timeout: float = START_TIMEOUT,
) -> Iterator[Emulator]:
    """Runs the emulator (installing it first if needed) for the ``with`` block.

    Args:
        target: Where App Engine tasks go: a base URL such as ``"http://127.0.0.1:54321"``
            (the served application), or ``"HOST:PORT"``.
        queues: Short names of the queues to create at start-up; more can be made with
            :meth:`Emulator.create_queues`.
        max_retries: How many times a failed task is retried before the emulator drops it
            (it retries at once, without backoff); None for no limit.
        workers: Threads answering gRPC calls (the emulator's own start command uses 2).
        project: The project of the queues.
        location: The location of the queues.
        start_timeout: Most seconds to wait for it to listen.

    Yields:
        The running :class:`Emulator`. It is stopped (its whole process group) when the block ends.

    Raises:
        EmulatorUnavailableError: The venv cannot be made, or the emulator did not start;
            the message says why, with the end of its log.
    """
    import json

    venv = emulator_venv()
    parts = urlsplit(target if "//" in target else f"http://{target}")
    if not parts.hostname or not parts.port:
        raise ValueError(f"The emulator's target needs a host and a port, not {target!r}.")
    config = {
        "host": "127.0.0.1",
        "target_host": parts.hostname,
        "target_port": parts.port,
        "queues": [f"projects/{project}/locations/{location}/queues/{queue}" for queue in queues],
        "max_retries": -1 if max_retries is None else max_retries,
        "workers": workers,
    }
    process = subprocess.Popen(
        [str(_python(venv)), "-u", "-c", _LAUNCHER, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    port: list[int] = []
    listening = threading.Event()

    def read_output() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            if line.startswith(_PORT_LINE):
                port.append(int(line[len(_PORT_LINE) :]))
                listening.set()
                continue
            lines.append(line)
            logger.info("%s", line)
        listening.set()  # it exited: stop waiting

    reader = threading.Thread(target=read_output, name="gcloud-tasks-emulator-log", daemon=True)
    reader.start()
    emulator: Emulator | None = None
    try:
        if not listening.wait(start_timeout) or not port:
            tail = " | ".join(lines[-5:]) or "no output"
            status = process.poll()
            state = f"exited with status {status}" if status is not None else f"not listening after {start_timeout}s"
            raise EmulatorUnavailableError(f"gcloud-tasks-emulator {state}: {tail}")
        emulator = Emulator(f"127.0.0.1:{port[0]}", f"http://{parts.hostname}:{parts.port}", project, location,
                            process, lines)  # fmt: skip
        _wait_ready(emulator, start_timeout)
        yield emulator
    finally:
        if emulator is not None:
            emulator.close_client()
        _stop(process)
        reader.join(timeout=STOP_TIMEOUT)  # the pipe ends when the process does
        if process.stdout is not None and not reader.is_alive():
            process.stdout.close()


@contextmanager
def emulator_for_tests(target: str, **options: Any) -> Iterator[Emulator]:
    """:func:`run_emulator` for pytest fixtures: a test skips when the emulator cannot be installed here.

    The skip is one line saying what is missing; with ``REQUIRE_GCLOUD_TASKS_EMULATOR=1`` the test fails
    instead. An emulator that is installed but does not start is an error, not a skip.

    Args:
        target: As for :func:`run_emulator`.
        **options: More :func:`run_emulator` arguments.

    Yields:
        The running :class:`Emulator`.
    """
    import pytest

    try:
        emulator_venv()
    except EmulatorUnavailableError as exc:
        if require_emulator():
            pytest.fail(f"{exc} ({REQUIRE_ENV} is set)", pytrace=False)
        pytest.skip(str(exc))
    with run_emulator(target, **options) as emulator:
        yield emulator


def _wait_ready(emulator: Emulator, timeout: float) -> None:
    """Waits until the emulator answers ``ListQueues``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            emulator.client.list_queues(parent=emulator.parent, timeout=2)
            return
        except Exception as exc:
            if time.monotonic() > deadline or emulator.process.poll() is not None:
                raise EmulatorUnavailableError(
                    f"gcloud-tasks-emulator did not answer ListQueues: {exc!r} | {emulator.log(5)}"
                ) from exc
            time.sleep(0.1)


def _stop(process: subprocess.Popen[Any]) -> None:
    """Ends the emulator's process group: SIGTERM, then SIGKILL if it lingers."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    if process.poll() is None:
        for sig in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.name == "nt":
                    process.kill()
                else:
                    os.killpg(process.pid, sig)
            try:
                process.wait(STOP_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue
