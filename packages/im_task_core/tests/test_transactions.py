"""``transactional=True``: tasks go to the binder of the open transaction, and nowhere without one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from im_task_testsupport import sink

from im_task import BadTransactionStateError, EnqueueError, configure, task
from im_task.transactions import TransactionBinder, register_binder, unregister_binder
from im_task.transports import RecordingTransport, TaskRequest, Transport


class ListBinder:
    """A binder keeping tasks in a list until its transaction commits."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.open = False
        self.pending: list[tuple[TaskRequest, Transport]] = []

    def in_transaction(self) -> bool:
        return self.open

    def enqueue_on_commit(self, request: TaskRequest, transport: Transport) -> str:
        assert request.name is None
        self.pending.append((request, transport))
        return f"txn-{len(self.pending)}"

    def commit(self) -> None:
        for request, transport in self.pending:
            transport.enqueue(request)
        self.pending.clear()


def work(x: int) -> None:
    sink.record(x)


@pytest.fixture
def recorder() -> RecordingTransport:
    transport = RecordingTransport()
    configure(transport=transport)
    return transport


@pytest.fixture
def binders() -> Iterator[list[ListBinder]]:
    made: list[ListBinder] = []
    yield made
    for binder in made:
        unregister_binder(binder)


def _binder(binders: list[ListBinder], description: str) -> ListBinder:
    binder = ListBinder(description)
    register_binder(binder)
    binders.append(binder)
    return binder


def test_binder_protocol_is_checkable() -> None:
    assert isinstance(ListBinder("x"), TransactionBinder)


def test_no_binder_is_a_bad_transaction_state(recorder: RecordingTransport) -> None:
    with pytest.raises(BadTransactionStateError, match=r"needs an open transaction.*none is installed") as info:
        task(work, transactional=True)(1)
    assert isinstance(info.value, EnqueueError)
    assert recorder.requests == []


def test_binder_not_in_a_transaction_is_a_bad_transaction_state(
    recorder: RecordingTransport, binders: list[ListBinder]
) -> None:
    _binder(binders, "Django's transaction.atomic()")
    with pytest.raises(BadTransactionStateError, match=r"supported: Django's transaction.atomic\(\)"):
        task(work, transactional=True)(1)
    assert recorder.requests == []


def test_binder_in_a_transaction_gets_the_request(recorder: RecordingTransport, binders: list[ListBinder]) -> None:
    idle = _binder(binders, "idle")
    active = _binder(binders, "active")
    active.open = True
    handle = task(work, transactional=True, queue="txq")(7)
    assert handle.name == "txn-1"
    assert handle.queue == "txq"
    assert idle.pending == []
    [(request, transport)] = active.pending
    assert transport is recorder
    assert request.queue == "txq"
    assert recorder.requests == []  # nothing sent before commit
    active.commit()
    assert len(recorder.requests) == 1
    recorder.run_all()
    assert sink.calls == [7]


def test_non_transactional_tasks_ignore_the_binder(recorder: RecordingTransport, binders: list[ListBinder]) -> None:
    binder = _binder(binders, "active")
    binder.open = True
    task(work)(1)
    assert binder.pending == []
    assert len(recorder.requests) == 1


def test_register_is_idempotent_and_unregister_removes(recorder: RecordingTransport) -> None:
    binder = ListBinder("b")
    binder.open = True
    register_binder(binder)
    register_binder(binder)
    try:
        task(work, transactional=True)(1)
        assert len(binder.pending) == 1
    finally:
        unregister_binder(binder)
    unregister_binder(binder)  # twice is fine
    with pytest.raises(BadTransactionStateError):
        task(work, transactional=True)(1)
