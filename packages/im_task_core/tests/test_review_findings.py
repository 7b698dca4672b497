"""Regression tests of a correctness review: lost tasks, leaked payloads, error types, state."""

from __future__ import annotations

import asyncio
import os
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


# -- resources released on failure and on close, locks renewed in a forked child --------------------------------


def test_a_local_payload_store_closes_its_connection_when_setting_it_up_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[bool] = []

    class Failing(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql.startswith("PRAGMA"):
                raise sqlite3.OperationalError("disk I/O error")
            return super().execute(sql, *args)

        def close(self) -> None:
            closed.append(True)
            super().close()

    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, factory=Failing, **k))
    store = LocalPayloadStore(tmp_path / "payloads.sqlite3")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        store.put(b"x")
    assert closed == [True]


def test_closing_the_cloud_tasks_transport_closes_the_async_clients_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.cloud.tasks_v2")
    from im_task.transports.cloudtasks import CloudTasksTransport

    closed: list[str] = []

    class Channel:
        def __init__(self, name: str) -> None:
            self.name = name

        async def close(self) -> None:
            closed.append(self.name)

    class AsyncClient:
        def __init__(self, name: str) -> None:
            self.transport = Channel(name)

    transport = CloudTasksTransport("p", "us-central1", emulator_host="127.0.0.1:1", environ={})
    names = iter(["of a loop ended", "of the running loop"])
    monkeypatch.setattr(transport, "_make_async_client", lambda: AsyncClient(next(names)))

    async def make() -> None:
        transport._async_client()

    async def make_and_close() -> None:
        transport._async_client()
        transport.close()  # the running loop's client is closed on that loop; the ended loop's is dropped
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(make())
    asyncio.run(make_and_close())
    assert closed == ["of the running loop"]
    transport.close()  # again: nothing left, nothing raised


def test_closing_the_cloud_tasks_transport_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.cloud.tasks_v2")
    from im_task.transports.cloudtasks import CloudTasksTransport

    class Broken:
        @property
        def transport(self) -> Any:
            raise RuntimeError("broken")

    transport = CloudTasksTransport("p", "us-central1", emulator_host="127.0.0.1:1", environ={})
    monkeypatch.setattr(transport, "_make_async_client", Broken)

    async def make_and_close() -> None:
        transport._async_client()
        transport.close()

    asyncio.run(make_and_close())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="this platform has no os.fork")
def test_a_forked_child_gets_a_new_cloud_tasks_transport_lock() -> None:
    """A fork while another thread looks the location up (holding the lock) must not deadlock the child."""
    pytest.importorskip("google.cloud.tasks_v2")
    from im_task.transports.cloudtasks import CloudTasksTransport

    transport = CloudTasksTransport("p", None, environ={"GAE_ENV": "standard"})  # the location is looked up
    with transport._lock:  # held at the fork, as by a thread of the parent asking the metadata server
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 2
            try:
                code = 0 if transport._lock.acquire(timeout=5) else 1
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
