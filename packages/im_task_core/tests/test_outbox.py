"""The outbox algorithm (``im_task.outbox``) over an in-memory storage with real transactions."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

import pytest
from im_task_testsupport.faulty_transports import ResetTransport

from im_task import BadTransactionStateError, ConfigurationError, EnqueueError, TaskTooLargeError, outbox
from im_task.outbox import OutboxStorage, SweepResult, enqueue_on_commit, send_after_commit, sweep
from im_task.response import TaskResponse, answer
from im_task.transports import ImmediateTransport, RecordingTransport, TaskRequest


@dataclass
class _Transaction:
    rows: dict[int, TaskRequest] = field(default_factory=dict)
    callbacks: list[Callable[[], object]] = field(default_factory=list)


class MemoryOutbox:
    """An outbox in a dict, with transactions: rows and callbacks of a transaction apply only on commit.

    ``now`` is this storage's clock (seconds); a row remembers when it was written.
    """

    def __init__(self) -> None:
        self.rows: dict[int, tuple[float, TaskRequest]] = {}
        self.now = 1000.0
        self.reads: list[tuple[int | None, int]] = []  # (after, limit) of each unsent() call
        self._keys = itertools.count(1)
        self._open: _Transaction | None = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commits when the block ends, rolls back when it raises; callbacks run after the commit."""
        self._open = opened = _Transaction()
        try:
            yield
        except BaseException:
            self._open = None
            raise
        self._open = None
        self.rows.update({key: (self.now, request) for key, request in opened.rows.items()})
        for callback in opened.callbacks:
            callback()

    def add(self, request: TaskRequest) -> int:
        if self._open is None:
            raise BadTransactionStateError("MemoryOutbox needs an open transaction.")
        key = next(self._keys)
        self._open.rows[key] = request
        return key

    def after_commit(self, callback: Callable[[], object]) -> None:
        assert self._open is not None
        self._open.callbacks.append(callback)

    def mark_sent(self, key: int) -> None:
        self.rows.pop(key, None)

    def unsent(self, older_than: float, after: int | None, limit: int) -> list[tuple[int, TaskRequest]]:
        self.reads.append((after, limit))
        due = [
            (key, request)
            for key, (written, request) in sorted(self.rows.items())
            if written <= self.now - older_than and (after is None or key > after)
        ]
        return due[:limit]

    def names(self) -> list[str | None]:
        return [request.name for _, request in self.rows.values()]


def failing_endpoint(
    method: str, path: str, body: bytes | IO[bytes], headers: Mapping[str, str], remote_addr: str | None = None
) -> TaskResponse:
    """An endpoint whose task always raises."""
    return answer(500, "Internal Server Error", RuntimeError("the task's own error"))


def _request(body: bytes = b"payload", **changes: object) -> TaskRequest:
    return TaskRequest(queue="default", url="/_ah/task/m/f", body=body, **changes)  # type: ignore[arg-type]


def _recorder() -> RecordingTransport:
    return RecordingTransport(failing_endpoint)  # never run here: only recorded


def test_memory_outbox_is_an_outbox_storage() -> None:
    storage: OutboxStorage[int] = MemoryOutbox()  # mypy checks the protocol here
    assert storage.unsent(0, None, 1) == []


def test_commit_sends_and_marks_sent() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    with storage.transaction():
        name = enqueue_on_commit(storage, _request(), queue)
        assert queue.requests == []  # not before the commit
        assert storage.rows == {}  # nor visible outside the transaction
    assert name.startswith(outbox.NAME_PREFIX)
    assert [request.name for request in queue.requests] == [name]
    assert storage.rows == {}


def test_a_given_name_is_kept() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    with storage.transaction():
        assert enqueue_on_commit(storage, _request(name="mine"), queue) == "mine"
    assert queue.requests[0].name == "mine"


def test_rollback_leaves_nothing() -> None:
    storage, queue = MemoryOutbox(), _recorder()

    def work() -> None:
        with storage.transaction():
            enqueue_on_commit(storage, _request(), queue)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        work()
    assert queue.requests == []
    assert storage.rows == {}
    assert sweep(storage, queue, older_than=0) == SweepResult()


def test_outside_a_transaction_the_storage_refuses() -> None:
    with pytest.raises(BadTransactionStateError):
        enqueue_on_commit(MemoryOutbox(), _request(), _recorder())


def test_too_large_is_refused_before_anything_is_written() -> None:
    storage, queue = MemoryOutbox(), RecordingTransport(failing_endpoint, max_task_size=2048)
    with storage.transaction():
        with pytest.raises(TaskTooLargeError, match="over the inline limit of 2048 bytes"):
            enqueue_on_commit(storage, _request(b"x" * 4096), queue)
        assert storage._open is not None
        assert storage._open.rows == {}
    assert storage.rows == {}
    assert queue.requests == []


def test_a_name_the_queue_has_counts_as_sent() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    queue.enqueue(_request(name="taken"))  # a sweep got there first
    with storage.transaction():
        enqueue_on_commit(storage, _request(name="taken"), queue)
    assert storage.rows == {}
    assert len(queue.requests) == 1


def test_enqueue_error_keeps_the_row_for_the_sweep(caplog: pytest.LogCaptureFixture) -> None:
    storage, closed, queue = MemoryOutbox(), _recorder(), _recorder()
    closed.close()  # enqueue raises EnqueueError
    with caplog.at_level(logging.WARNING, logger="im_task"), storage.transaction():
        name = enqueue_on_commit(storage, _request(), closed)
    assert storage.names() == [name]
    [logged] = [r for r in caplog.records if "stays in the outbox" in r.getMessage()]
    assert logged.levelno == logging.WARNING
    assert logged.exc_info is not None
    assert isinstance(logged.exc_info[1], EnqueueError)
    assert sweep(storage, queue, older_than=0) == SweepResult(sent=1)
    assert [request.name for request in queue.requests] == [name]
    assert storage.rows == {}


def test_an_unexpected_error_keeps_the_row(caplog: pytest.LogCaptureFixture) -> None:
    storage, queue = MemoryOutbox(), _recorder()
    with caplog.at_level(logging.WARNING, logger="im_task"), storage.transaction():
        name = enqueue_on_commit(storage, _request(), ResetTransport(queue))
    assert storage.names() == [name]
    [logged] = [r for r in caplog.records if "stays in the outbox" in r.getMessage()]
    assert logged.levelno == logging.ERROR
    assert queue.requests == []


def test_an_inline_transport_error_marks_sent_and_reaches_the_committer() -> None:
    storage, inline = MemoryOutbox(), ImmediateTransport(failing_endpoint)
    with pytest.raises(RuntimeError, match="the task's own error"), storage.transaction():
        enqueue_on_commit(storage, _request(), inline)
    assert storage.rows == {}  # the task ran: not sent again
    assert len(inline.responses) == 1


def test_send_after_commit_says_whether_the_row_is_done() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    with storage.transaction():
        key = storage.add(_request(name="direct"))
    closed = _recorder()
    closed.close()
    assert send_after_commit(storage, key, _request(name="direct"), closed) is False
    assert storage.names() == ["direct"]
    assert send_after_commit(storage, key, _request(name="direct"), queue) is True
    assert storage.rows == {}


def _left_behind(storage: MemoryOutbox, count: int) -> list[str]:
    """Writes ``count`` committed rows whose send after commit failed."""
    closed = _recorder()
    closed.close()
    names = []
    for number in range(count):
        with storage.transaction():
            names.append(enqueue_on_commit(storage, _request(str(number).encode()), closed))
    return names


def test_sweep_leaves_young_rows_alone() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    [name] = _left_behind(storage, 1)
    storage.now += 30
    assert sweep(storage, queue, older_than=60) == SweepResult()
    storage.now += 30
    assert sweep(storage, queue, older_than=60) == SweepResult(sent=1)
    assert [request.name for request in queue.requests] == [name]


def test_sweep_reads_in_batches_and_honours_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "SWEEP_BATCH", 2)
    storage, queue = MemoryOutbox(), _recorder()
    names = _left_behind(storage, 5)
    assert sweep(storage, queue, older_than=0, limit=3) == SweepResult(sent=3)
    assert storage.reads == [(None, 2), (2, 1)]
    storage.reads.clear()
    assert sweep(storage, queue, older_than=0) == SweepResult(sent=2)
    assert storage.reads == [(None, 2), (5, 2)]  # a full batch, then the rest
    assert [request.name for request in queue.requests] == names
    assert storage.rows == {}


def test_sweep_counts_each_outcome_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    storage, queue = MemoryOutbox(), _recorder()
    first, second, third = _left_behind(storage, 3)
    queue.enqueue(_request(name=second))  # the queue has it already
    with caplog.at_level(logging.INFO, logger="im_task"):
        result = sweep(storage, ResetTransport(queue), older_than=0)
    assert result == SweepResult(sent=1, already_sent=1, failed=1)
    assert storage.names() == [first]  # the raw error: kept for the next sweep
    assert any("1 sent, 1 already sent, 1 failed" in r.getMessage() for r in caplog.records)
    closed = _recorder()
    closed.close()
    assert sweep(storage, closed, older_than=0) == SweepResult(failed=1)
    assert sweep(storage, queue, older_than=0) == SweepResult(sent=1)
    assert sorted(str(r.name) for r in queue.requests) == sorted([first, second, third])


def test_sweep_keeps_a_row_whose_inline_task_failed() -> None:
    storage = MemoryOutbox()
    _left_behind(storage, 1)
    assert sweep(storage, ImmediateTransport(failing_endpoint), older_than=0) == SweepResult(failed=1)
    assert len(storage.rows) == 1


@pytest.mark.parametrize(
    ("older_than", "limit", "words"),
    [
        (-1, None, "older_than"),
        (True, None, "older_than"),
        ("60", None, "older_than"),
        (float("nan"), None, "older_than"),
        (0, 0, "limit"),
        (0, 2.5, "limit"),
        (0, True, "limit"),
    ],
)
def test_sweep_arguments_are_checked(older_than: object, limit: object, words: str) -> None:
    storage = MemoryOutbox()
    with pytest.raises(ConfigurationError, match=words):
        sweep(storage, _recorder(), older_than=older_than, limit=limit)  # type: ignore[arg-type]
    assert storage.reads == []  # refused before reading
