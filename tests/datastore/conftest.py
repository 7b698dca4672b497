"""Fixtures of the tests against the Datastore emulator of the Google Cloud CLI.

One emulator serves the session (``im_task_testsupport.datastore_emulator``);
each test gets it emptied, google-cloud-ndb pointed at it, an
:class:`~im_task.stores.NdbPayloadStore` and an ndb outbox installed, and a
local queue delivering over real HTTP to a :class:`~im_task.wsgi.TaskWSGIApp`
served on 127.0.0.1. Where the emulator cannot run (no ``gcloud``), every test
here is skipped with one line saying why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from im_task_testsupport import sink
from im_task_testsupport.datastore_emulator import DatastoreEmulator, EmulatorUnavailableError, datastore_emulator
from im_task_testsupport.datastore_emulator import required as emulator_required

from im_task import configure
from im_task.testing import ServedQueue, serve_local_queue
from im_task.testing.plugin import ImTaskSettings
from im_task.wsgi import TaskWSGIApp

ndb = pytest.importorskip("google.cloud.ndb", reason="google-cloud-ndb is not installed (pip install 'im-task[gcp]')")


@pytest.fixture(scope="session")
def emulator() -> Iterator[DatastoreEmulator]:
    """The running emulator, with DATASTORE_EMULATOR_HOST and DATASTORE_PROJECT_ID set for the session."""
    try:
        with datastore_emulator() as running:
            saved = {name: os.environ.get(name) for name in running.environment}
            os.environ.update(running.environment)
            try:
                yield running
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
    except EmulatorUnavailableError as exc:
        if emulator_required():
            raise
        pytest.skip(f"SKIPPED: Datastore emulator tests: {exc}")


@dataclass
class Datastore:
    """What a test gets.

    Attributes:
        emulator: The emulator (emptied before the test).
        client: An ``ndb.Client`` of the emulator.
        store: The payload store installed.
        binder: The ndb outbox installed.
        queue: The local queue delivering over HTTP to the served app.
    """

    emulator: DatastoreEmulator
    client: Any
    store: Any
    binder: Any
    queue: ServedQueue


@pytest.fixture
def datastore(emulator: DatastoreEmulator, im_task_settings: ImTaskSettings) -> Iterator[Datastore]:
    """The emulator emptied, an NdbPayloadStore and an ndb outbox installed, a local queue served on 127.0.0.1."""
    from im_task.ndb import install_outbox, uninstall_outbox
    from im_task.stores import NdbPayloadStore

    emulator.reset()
    sink.reset()
    client = ndb.Client(project=emulator.project)
    store = NdbPayloadStore(client)
    configure(payload_store=store)
    binder = install_outbox(client)
    try:
        with serve_local_queue(TaskWSGIApp(), im_task_settings.data_dir / "queue.sqlite3", poll_interval=0.2) as queue:
            configure(transport=queue.transport)
            yield Datastore(emulator, client, store, binder, queue)
    finally:
        uninstall_outbox(binder)
