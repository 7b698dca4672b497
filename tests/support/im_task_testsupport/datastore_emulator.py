"""The Cloud Datastore emulator of the Google Cloud CLI, started on a free port of 127.0.0.1 for tests.

``gcloud beta emulators datastore start --no-store-on-disk --consistency=1.0``
runs in its own process group with its own data directory, is ready when
``http://127.0.0.1:PORT/`` answers ``Ok``, is emptied between tests with
``POST /reset``, and is stopped (the whole group: gcloud starts a Java child)
when the block ends, however it ends. Where the machine has no ``gcloud`` (or
no Java), :class:`EmulatorUnavailableError` says why in one line; the tests
skip with it, unless ``REQUIRE_DATASTORE_EMULATOR=1`` asks them to fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["PROJECT", "REQUIRE_ENV", "DatastoreEmulator", "EmulatorUnavailableError", "datastore_emulator", "required"]

#: The project the emulator serves.
PROJECT = "im-task-test"
#: Set to ``1`` to make a missing emulator an error instead of a skip.
REQUIRE_ENV = "REQUIRE_DATASTORE_EMULATOR"
_START_TIMEOUT = 90.0


class EmulatorUnavailableError(RuntimeError):
    """The emulator cannot run here; the message says why in one line."""


def required() -> bool:
    """Whether a missing emulator must fail the tests (``REQUIRE_DATASTORE_EMULATOR=1``)."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class DatastoreEmulator:
    """A running emulator.

    Attributes:
        host: ``127.0.0.1:PORT``, the value of ``DATASTORE_EMULATOR_HOST``.
        project: The project id, the value of ``DATASTORE_PROJECT_ID``.
    """

    host: str
    project: str = PROJECT

    @property
    def environment(self) -> dict[str, str]:
        """The variables that point google-cloud-ndb at the emulator (``ndb.Client()`` reads the project from
        ``DATASTORE_DATASET``)."""
        return {
            "DATASTORE_EMULATOR_HOST": self.host,
            "DATASTORE_PROJECT_ID": self.project,
            "DATASTORE_DATASET": self.project,
        }

    def reset(self) -> None:
        """Deletes every entity (``POST /reset``)."""
        request = urllib.request.Request(f"http://{self.host}/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ok(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=1) as answer:
            return bool(answer.read().strip() == b"Ok")
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def datastore_emulator() -> Iterator[DatastoreEmulator]:
    """Starts the emulator, waits until it answers, yields it, and stops it however the block ends.

    Raises:
        EmulatorUnavailableError: No ``gcloud`` or ``java``, or the emulator did not start (with its log's tail).
    """
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorUnavailableError("no 'gcloud' on PATH: install the Google Cloud CLI with its Datastore emulator")
    if shutil.which("java") is None:
        raise EmulatorUnavailableError("no 'java' on PATH: the Datastore emulator of the Google Cloud CLI needs Java")
    host = f"127.0.0.1:{_free_port()}"
    with tempfile.TemporaryDirectory(prefix="im-task-datastore-") as data_dir:
        log_path = os.path.join(data_dir, "emulator.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    gcloud,
                    "beta",
                    "emulators",
                    "datastore",
                    "start",
                    "--no-store-on-disk",
                    "--consistency=1.0",
                    f"--host-port={host}",
                    f"--project={PROJECT}",
                    f"--data-dir={os.path.join(data_dir, 'data')}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopping it stops its Java child too
            )
        try:
            deadline = time.monotonic() + _START_TIMEOUT
            while not _answers_ok(host):
                if process.poll() is not None or time.monotonic() > deadline:
                    with open(log_path, "rb") as log_file:
                        tail = log_file.read()[-600:].decode(errors="replace").strip().replace("\n", " | ")
                    raise EmulatorUnavailableError(f"the Datastore emulator did not start on {host}: {tail}")
                time.sleep(0.2)
            yield DatastoreEmulator(host)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stops the emulator's process group: SIGTERM, then SIGKILL for whatever is left (its Java child)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
