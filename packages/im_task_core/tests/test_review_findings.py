"""Regression tests of a correctness review: lost tasks, leaked payloads, error types, state."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from im_task import BulkEnqueueError, ConfigurationError, EnqueueError, TaskAlreadyExistsError, configure, task
from im_task.state import STATE
from im_task.stores import LocalPayloadStore, get_payload_store
from im_task.transports import LocalTransport, RecordingTransport, TaskRequest
from im_task.transports.local.store import NewTask, TaskStore

BIG = b"x" * 200_000  # over the 100 KB inline limit: travels through the payload store


@task
def consume(data: bytes) -> None:
    pass


# -- a refused large task leaves no payload behind ------------------------------------------------------------


def test_a_large_named_task_refused_by_name_leaves_no_payload(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path / "payloads.sqlite3")
    recorder = RecordingTransport()
    configure(transport=recorder, payload_store=store)
    once = consume.using(name="once", raise_if_exists=False)
    once(BIG)
    once(BIG)  # tolerated: the task exists; its payload must not be stored a second time for ever
    with pytest.raises(TaskAlreadyExistsError):
        consume.using(name="once")(BIG)
    assert len(recorder.requests) == 1
    assert len(store.keys()) == 1  # only the payload of the one task that exists


def test_a_bulk_enqueue_leaves_no_payload_for_the_calls_refused(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path / "payloads.sqlite3")
    recorder = RecordingTransport()
    configure(transport=recorder, payload_store=store)
    consume.using(name="taken")(BIG)
    with pytest.raises(BulkEnqueueError) as raised:
        consume.using(name="taken").map([BIG, BIG])
    assert sorted(raised.value.errors) == [0, 1]
    assert len(store.keys()) == 1


def test_a_large_task_whose_send_failed_ambiguously_keeps_its_payload(tmp_path: Path) -> None:
    """A failure that may hide a created task (a lost answer) must not delete the payload that task needs."""

    class Flaky(RecordingTransport):
        def enqueue(self, request: TaskRequest) -> str:
            super().enqueue(request)
            raise EnqueueError("the answer was lost")

    store = LocalPayloadStore(tmp_path / "payloads.sqlite3")
    configure(transport=Flaky(), payload_store=store)
    with pytest.raises(EnqueueError):
        consume(BIG)
    assert len(store.keys()) == 1


# -- the payload store keeps to the pytest plugin's guard, as the local queue does -----------------------------


def test_the_default_local_payload_store_refuses_the_working_directory_under_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert STATE.guard  # the plugin's guard is on
    configure(data_dir=None, payload_store="local")
    with pytest.raises(ConfigurationError):
        LocalTransport()  # the local queue refuses the working directory's default data directory
    with pytest.raises(ConfigurationError):
        get_payload_store()  # and so must the local payload store
    assert not (tmp_path / ".im_task").exists()


# -- a failed COMMIT does not wedge the local queue ------------------------------------------------------------


class _FailingCommit:
    """A connection whose next COMMIT fails as a busy or full disk would make it fail."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.fail = True

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self.fail:
            self.fail = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _new(name: str) -> NewTask:
    return NewTask("default", name, "/_ah/task/m/f", {}, b"body", time.time(), None, None)


def test_a_failed_commit_stores_nothing_and_the_queue_keeps_working(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "q.sqlite3")
    try:
        with store._read() as conn:
            store._conn = _FailingCommit(conn)  # type: ignore[assignment]
        with pytest.raises(EnqueueError):
            store.add(_new("a"), now=time.time(), name_retention=3600)
        store.add(_new("b"), now=time.time(), name_retention=3600)  # the next write works
        assert [t.name for t in store.tasks(state=None, queue=None, limit=10)] == ["b"]
    finally:
        store.close()


# -- a non-transactional large task must not have its payload written in the caller's transaction --------------


@task
def record_size(data: bytes) -> None:
    from im_task_testsupport import sink

    sink.record(len(data))


class _TransactionalStore(LocalPayloadStore):
    """Writes in the caller's open transaction, as ``NdbPayloadStore`` does inside ``ndb.transaction()``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.pending: list[tuple[str, bytes]] | None = None  # a transaction is open when not None

    def put(self, payload: bytes, *, in_transaction: bool = True) -> str:
        if self.pending is None or not in_transaction:
            return super().put(payload)
        key = f"pending-{len(self.pending)}"
        self.pending.append((key, bytes(payload)))
        return key  # visible only once the transaction commits


def test_a_large_task_sent_at_once_inside_a_transaction_finds_its_payload(tmp_path: Path) -> None:
    from im_task_testsupport import sink

    store = _TransactionalStore(tmp_path / "payloads.sqlite3")
    recorder = RecordingTransport()
    configure(transport=recorder, payload_store=store)
    store.pending = []  # the application opened a transaction
    record_size(BIG)  # not transactional: sent now
    recorder.run_all()  # the queue delivers before the transaction commits
    assert sink.events() == [len(BIG)]
