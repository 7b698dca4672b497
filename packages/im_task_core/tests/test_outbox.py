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
    rows: dict[int, tuple[TaskRequest, str]] = field(default_factory=dict)
    callbacks: list[Callable[[], object]] = field(default_factory=list)


@dataclass
class Row:
    """One outbox row: its task, its claim (owner, end; None: clock not started) and its sent mark."""

    request: TaskRequest
    owner: str
    claimed_until: float | None = None
    sent: bool = False


class MemoryOutbox:
    """An outbox in a dict, with transactions: rows and callbacks of a transaction apply only on commit.

    ``now`` is this storage's clock (seconds). ``fail`` names methods that
    raise (as a database whose connection was killed does).
    """

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.now = 1000.0
        self.reads: list[tuple[int | None, int]] = []  # (after, limit) of each due() call
        self.fail: set[str] = set()
        self._keys = itertools.count(1)
        self._open: _Transaction | None = None

    def _maybe_fail(self, method: str) -> None:
        if method in self.fail:
            raise ConnectionError(f"the database connection was killed during {method}")

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
        self.rows.update({key: Row(request, owner) for key, (request, owner) in opened.rows.items()})
        for callback in opened.callbacks:
            callback()

    def add(self, request: TaskRequest, owner: str) -> int:
        if self._open is None:
            raise BadTransactionStateError("MemoryOutbox needs an open transaction.")
        key = next(self._keys)
        self._open.rows[key] = (request, owner)
        return key

    def after_commit(self, callback: Callable[[], object]) -> None:
        assert self._open is not None
        self._open.callbacks.append(callback)

    def claim(self, key: int, owner: str, seconds: float, older_than: float | None) -> bool:
        self._maybe_fail("claim")
        row = self.rows.get(key)
        if row is None or row.sent:
            return False
        ended = row.claimed_until is not None and older_than is not None and row.claimed_until <= self.now - older_than
        if row.owner != owner and not ended:
            return False
        row.owner, row.claimed_until = owner, self.now + seconds
        return True

    def release(self, key: int, owner: str) -> None:
        self._maybe_fail("release")
        row = self.rows.get(key)
        if row is not None and row.owner == owner and not row.sent:
            row.claimed_until = self.now

    def mark_sent(self, key: int) -> None:
        self._maybe_fail("mark_sent")
        if key in self.rows:
            self.rows[key].sent = True

    def due(self, older_than: float, after: int | None, limit: int) -> list[tuple[int, TaskRequest]]:
        self.reads.append((after, limit))
        for row in self.rows.values():
            if row.claimed_until is None:
                row.claimed_until = self.now  # first seen committed: its clock starts
        due = [
            (key, row.request)
            for key, row in sorted(self.rows.items())
            if not row.sent
            and row.claimed_until is not None
            and row.claimed_until <= self.now - older_than
            and (after is None or key > after)
        ]
        return due[:limit]

    def purge_sent(self) -> int:
        sent = [key for key, row in self.rows.items() if row.sent]
        for key in sent:
            del self.rows[key]
        return len(sent)

    def names(self) -> list[str | None]:
        """Names of the rows not marked sent."""
        return [row.request.name for row in self.rows.values() if not row.sent]

    def unsent(self) -> dict[int, Row]:
        return {key: row for key, row in self.rows.items() if not row.sent}


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
    assert storage.due(0, None, 1) == []


def test_commit_sends_and_marks_sent() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    with storage.transaction():
        name = enqueue_on_commit(storage, _request(), queue)
        assert queue.requests == []  # not before the commit
        assert storage.rows == {}  # nor visible outside the transaction
    assert name.startswith(outbox.NAME_PREFIX)
    assert [request.name for request in queue.requests] == [name]
    assert storage.unsent() == {}  # marked sent, durably
    assert sweep(storage, queue, older_than=0) == SweepResult(purged=1)  # cleaned up later
    assert storage.rows == {}
    assert len(queue.requests) == 1


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


@pytest.mark.parametrize("lease", [0, -1, True, "30", float("inf"), float("nan")])
def test_a_bad_lease_is_refused_before_anything_is_written(lease: object) -> None:
    storage = MemoryOutbox()
    with storage.transaction():
        with pytest.raises(ConfigurationError, match="lease must be a number of seconds > 0"):
            enqueue_on_commit(storage, _request(), _recorder(), lease=lease)  # type: ignore[arg-type]
        assert storage._open is not None
        assert storage._open.rows == {}


def test_a_name_the_queue_has_counts_as_sent() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    queue.enqueue(_request(name="taken"))  # a sweep got there first
    with storage.transaction():
        enqueue_on_commit(storage, _request(name="taken"), queue)
    assert storage.unsent() == {}
    assert len(queue.requests) == 1


def test_enqueue_error_keeps_the_row_for_the_sweep(caplog: pytest.LogCaptureFixture) -> None:
    storage, closed, queue = MemoryOutbox(), _recorder(), _recorder()
    closed.close()  # enqueue raises EnqueueError
    with caplog.at_level(logging.WARNING, logger="im_task"), storage.transaction():
        name = enqueue_on_commit(storage, _request(), closed, lease=30)
    assert storage.names() == [name]
    [row] = storage.rows.values()
    assert row.claimed_until == storage.now  # released: the sweep threshold counts from the failed send
    [logged] = [r for r in caplog.records if "stays in the outbox" in r.getMessage()]
    assert logged.levelno == logging.WARNING
    assert logged.exc_info is not None
    assert isinstance(logged.exc_info[1], EnqueueError)
    assert sweep(storage, queue, older_than=10) == SweepResult()  # too soon after the failed send
    storage.now += 10
    assert sweep(storage, queue, older_than=10) == SweepResult(sent=1)
    assert [request.name for request in queue.requests] == [name]
    assert sweep(storage, queue, older_than=0) == SweepResult(purged=1)
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
    assert storage.unsent() == {}  # the task ran: not sent again
    assert len(inline.responses) == 1


def test_send_after_commit_says_whether_the_row_is_done() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    with storage.transaction():
        key = storage.add(_request(name="direct"), "me")
    closed = _recorder()
    closed.close()
    assert send_after_commit(storage, key, _request(name="direct"), closed, owner="me") is False
    assert storage.names() == ["direct"]
    assert send_after_commit(storage, key, _request(name="direct"), queue, owner="me") is True
    assert storage.unsent() == {}
    assert send_after_commit(storage, key, _request(name="direct"), queue, owner="me") is False  # sent: never again
    assert len(queue.requests) == 1


# Claims: no row is sent by two parties, whatever the queue remembers.


def test_a_long_transaction_is_not_swept_while_its_send_is_under_way() -> None:
    """The sweep threshold counts from the commit, not from the task call."""
    storage, queue = MemoryOutbox(), _recorder()
    swept: list[SweepResult] = []

    class SlowQueue(RecordingTransport):
        def enqueue(self, request: TaskRequest) -> str | None:
            storage.now += 5  # the send takes 5 s; a sweep runs meanwhile
            swept.append(sweep(storage, queue, older_than=1))
            return queue.enqueue(request)

    with storage.transaction():
        enqueue_on_commit(storage, _request(), SlowQueue(), lease=30)
        storage.now += 100  # the transaction stays open far longer than the threshold
    assert swept == [SweepResult()]  # the row was held by its sender
    assert len(queue.requests) == 1
    assert storage.unsent() == {}


def test_a_sweep_that_claims_first_keeps_the_sender_away(caplog: pytest.LogCaptureFixture) -> None:
    storage, queue = MemoryOutbox(), _recorder()
    with storage.transaction():
        key = storage.add(_request(name="raced"), "sender-1")
    assert sweep(storage, queue, older_than=0) == SweepResult(sent=1)  # the sweep saw the commit first
    with caplog.at_level(logging.INFO, logger="im_task"):
        assert send_after_commit(storage, key, _request(name="raced"), queue, owner="sender-1") is False
    assert [request.name for request in queue.requests] == ["raced"]
    assert any("claimed by a sweep" in r.getMessage() for r in caplog.records)


def test_a_row_never_claimed_ages_from_when_a_sweep_first_sees_it() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    with storage.transaction():
        storage.add(_request(name="orphan"), "sender-that-died")  # no send after commit ever ran
    storage.now += 1000  # however old the task call, the age starts now
    assert sweep(storage, queue, older_than=60) == SweepResult()
    storage.now += 59
    assert sweep(storage, queue, older_than=60) == SweepResult()
    storage.now += 1
    assert sweep(storage, queue, older_than=60) == SweepResult(sent=1)


def test_two_sweeps_never_send_the_same_row(monkeypatch: pytest.MonkeyPatch) -> None:
    storage, queue = MemoryOutbox(), _recorder()
    names = _left_behind(storage, 3)
    other: list[SweepResult] = []

    class Racing(RecordingTransport):
        """While the first sweep sends its first row, a second sweep runs over the same rows."""

        def enqueue(self, request: TaskRequest) -> str | None:
            if not other:
                other.append(sweep(storage, queue, older_than=0))
            return queue.enqueue(request)

    first = sweep(storage, Racing(), older_than=0)
    assert other == [SweepResult(sent=2)]  # the row the first sweep holds is not due
    assert first == SweepResult(sent=1, taken=2)  # it read three due rows; the other sweep claimed two first
    assert sorted(str(request.name) for request in queue.requests) == sorted(names)


def test_a_claim_that_ended_lets_a_sweep_take_the_row() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    with storage.transaction():
        key = storage.add(_request(name="held"), "sweep-that-died")
    assert storage.claim(key, "sweep-that-died", 30, None)
    storage.now += 29
    assert sweep(storage, queue, older_than=0) == SweepResult()  # still held
    storage.now += 1
    assert sweep(storage, queue, older_than=5) == SweepResult()  # ended, but not 5 s ago
    storage.now += 5
    assert sweep(storage, queue, older_than=5) == SweepResult(sent=1)


def test_a_row_marked_sent_is_never_sent_again_whatever_the_queue_remembers() -> None:
    storage, queue = MemoryOutbox(), _recorder()
    with storage.transaction():
        key = storage.add(_request(name="sent-once"), "sender-1")
    assert storage.claim(key, "sender-1", 30, None)
    queue.enqueue(_request(name="sent-once"))
    storage.mark_sent(key)  # then the process died before any delete
    forgetful = _recorder()  # a queue that forgot the name
    storage.now += 3600
    assert sweep(storage, forgetful, older_than=0) == SweepResult(purged=1)
    assert forgetful.requests == []


# Never raise after a commit: bookkeeping failures are logged and left to the sweep.


def test_a_failed_sent_mark_does_not_reach_the_committer(caplog: pytest.LogCaptureFixture) -> None:
    storage, queue = MemoryOutbox(), _recorder()
    storage.fail.add("mark_sent")
    with caplog.at_level(logging.ERROR, logger="im_task"), storage.transaction():
        name = enqueue_on_commit(storage, _request(), queue, lease=30)
    assert [request.name for request in queue.requests] == [name]
    assert any("could not be marked sent" in r.getMessage() and r.exc_info for r in caplog.records)
    storage.fail.clear()
    assert sweep(storage, queue, older_than=0) == SweepResult()  # its claim still holds
    storage.now += 30
    # The one window no outbox closes: sent, not marked. The queue's name memory refuses the second copy.
    assert sweep(storage, queue, older_than=0) == SweepResult(already_sent=1)
    assert len(queue.requests) == 1


def test_a_failed_claim_sends_nothing_and_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    storage, queue = MemoryOutbox(), _recorder()
    storage.fail.add("claim")
    with caplog.at_level(logging.ERROR, logger="im_task"), storage.transaction():
        name = enqueue_on_commit(storage, _request(), queue)
    assert queue.requests == []
    assert any("Could not claim" in r.getMessage() for r in caplog.records)
    assert sweep(storage, queue, older_than=0) == SweepResult(failed=1)
    storage.fail.clear()
    assert sweep(storage, queue, older_than=0) == SweepResult(sent=1)
    assert [request.name for request in queue.requests] == [name]


def test_a_failed_release_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    storage, closed, queue = MemoryOutbox(), _recorder(), _recorder()
    closed.close()
    storage.fail.add("release")
    with caplog.at_level(logging.ERROR, logger="im_task"), storage.transaction():
        enqueue_on_commit(storage, _request(), closed, lease=30)
    assert any("Could not release" in r.getMessage() for r in caplog.records)
    storage.fail.clear()
    storage.now += 30  # the claim ends on its own
    assert sweep(storage, queue, older_than=0) == SweepResult(sent=1)


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
    assert sweep(storage, queue, older_than=0) == SweepResult(sent=2, purged=3)
    assert storage.reads == [(None, 2), (5, 2)]  # a full batch, then the rest
    assert [request.name for request in queue.requests] == names
    assert storage.unsent() == {}


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
    assert sweep(storage, closed, older_than=0) == SweepResult(failed=1, purged=2)
    assert sweep(storage, queue, older_than=0) == SweepResult(sent=1)
    assert sorted(str(r.name) for r in queue.requests) == sorted([first, second, third])


def test_sweep_keeps_a_row_whose_inline_task_failed() -> None:
    storage = MemoryOutbox()
    _left_behind(storage, 1)
    assert sweep(storage, ImmediateTransport(failing_endpoint), older_than=0) == SweepResult(failed=1)
    assert len(storage.unsent()) == 1


@pytest.mark.parametrize(
    ("older_than", "limit", "lease", "words"),
    [
        (-1, None, 30, "older_than"),
        (True, None, 30, "older_than"),
        ("60", None, 30, "older_than"),
        (float("nan"), None, 30, "older_than"),
        (float("inf"), None, 30, "older_than"),
        (0, 0, 30, "limit"),
        (0, 2.5, 30, "limit"),
        (0, True, 30, "limit"),
        (0, None, 0, "lease"),
        (0, None, "30", "lease"),
    ],
)
def test_sweep_arguments_are_checked(older_than: object, limit: object, lease: object, words: str) -> None:
    storage = MemoryOutbox()
    with pytest.raises(ConfigurationError, match=words):
        sweep(storage, _recorder(), older_than=older_than, limit=limit, lease=lease)  # type: ignore[arg-type]
    assert storage.reads == []  # refused before reading


def test_new_owner_is_fresh_and_checks_its_kind() -> None:
    assert outbox.new_owner("sweep").startswith("sweep-")
    assert outbox.new_owner() != outbox.new_owner()
    assert len(outbox.new_owner("sender")) <= 40
    with pytest.raises(ConfigurationError, match="short word"):
        outbox.new_owner("not a word")
