"""Bulk and async enqueue (``f.map``, ``f.starmap``, ``await f.enqueue_async``) on every transport."""

from __future__ import annotations

import asyncio
import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport import sink
from im_task_testsupport.faulty_transports import ResetTransport
from im_task_testsupport.wsgi_apps import request

from im_task import (
    BadTransactionStateError,
    BulkEnqueueError,
    ConfigurationError,
    EnqueueError,
    PermanentTaskFailure,
    TaskAlreadyExistsError,
    TaskHandle,
    TaskTooLargeError,
    configure,
    outbox,
    task,
)
from im_task.testing import ServedQueue
from im_task.transactions import register_binder, unregister_binder
from im_task.transports import ImmediateTransport, LocalTransport, RecordingTransport, TaskRequest, Transport

# -- tasks ---------------------------------------------------------------


@task
def work(x: Any) -> None:
    sink.record(x)


@task
def add(a: int, b: int = 0) -> None:
    sink.record(a + b)


@task
def picky(x: int) -> None:
    """Fails on 2, refuses 3 for good (which a queue drops), records the others."""
    if x == 2:
        raise ValueError("two is not welcome")
    if x == 3:
        raise PermanentTaskFailure("three is dropped")
    sink.record(x)


def bulk_error(call: Callable[[], object]) -> BulkEnqueueError:
    with pytest.raises(BulkEnqueueError) as info:
        call()
    return info.value


# -- fixtures ------------------------------------------------------------


@pytest.fixture
def recorder(im_task_recorder: RecordingTransport) -> RecordingTransport:
    return im_task_recorder


@pytest.fixture
def immediate(im_task_immediate: ImmediateTransport) -> ImmediateTransport:
    return im_task_immediate


# -- RecordingTransport: order, arguments, validation ---------------------


def test_map_enqueues_one_call_per_item_and_returns_the_handles_in_order(recorder: RecordingTransport) -> None:
    handles = work.map(["a", "b", "c", "d"])
    assert [type(h) for h in handles] == [TaskHandle] * 4
    assert [h.name for h in handles] == [r.name for r in recorder.requests]
    assert len({h.name for h in handles}) == 4
    assert all(h.url == work.url and h.queue == "default" and h.eta is None for h in handles)
    recorder.run_all()
    assert sink.calls == ["a", "b", "c", "d"]


def test_starmap_passes_each_item_as_the_positional_arguments(recorder: RecordingTransport) -> None:
    handles = add.starmap([(1, 2), [10, 20], (x for x in (100,))])
    assert len(handles) == 3
    recorder.run_all()
    assert sink.calls == [3, 30, 100]


def test_map_over_a_generator_and_empty_iterables(recorder: RecordingTransport) -> None:
    assert len(work.map(x * x for x in range(3))) == 3
    assert work.map([]) == []
    assert work.starmap(iter(())) == []
    assert work.map(iter([])) == []
    recorder.run_all()
    assert sink.calls == [0, 1, 4]


def test_map_keeps_the_options_countdown_sharing_one_eta(recorder: RecordingTransport) -> None:
    handles = work.using(countdown=60, queue="slow").map(range(3))
    assert {h.queue for h in handles} == {"slow"}
    etas = {h.eta for h in handles}
    assert len(etas) == 1
    assert None not in etas
    assert [r.schedule_time for r in recorder.requests] == [h.eta for h in handles]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: work.map(5), r"map\(\) takes an iterable of arguments .*not int"),  # type: ignore[arg-type]
        (lambda: work.map(None), r"map\(\) takes an iterable of arguments .*not NoneType"),  # type: ignore[arg-type]
        (lambda: work.map("abc"), r"not str \(that would make one task per character\); .*\['abc'\] for one task"),
        (lambda: work.starmap(7), r"starmap\(\) takes an iterable of arguments .*not int"),  # type: ignore[arg-type]
        (lambda: add.starmap([(1, 2), 3]), r"item 1 \(int\) is not iterable: use .map\(\)"),  # type: ignore[list-item]
        (lambda: add.starmap([(1, 2), "ab"]), r"item 1 \(str\) would be spread into its characters: wrap .* \('ab',\)"),
        (lambda: add.starmap([{"a": 1}]), r"item 0 \(dict\) would be spread into its keys"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_enqueued(
    recorder: RecordingTransport, call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        call()
    assert recorder.requests == []


def test_map_spreads_calls_over_a_list_of_queues(recorder: RecordingTransport) -> None:
    spread = work.using(queue=["q-a", "q-b", "q-c"])
    handles = spread.map(range(300))
    assert [h.queue for h in handles] == [r.queue for r in recorder.requests]
    assert {h.queue for h in handles} == {"q-a", "q-b", "q-c"}  # each missed with a chance of 3 * (2/3)**300


def test_a_bound_task_method_maps_too(recorder: RecordingTransport) -> None:
    handles = Counter(5).bump.map([1, 2])
    assert len(handles) == 2
    recorder.run_all()
    assert sink.calls == [6, 7]


class Counter:
    def __init__(self, start: int) -> None:
        self.start = start

    @task
    def bump(self, by: int) -> None:
        sink.record(self.start + by)


# -- partial failures ----------------------------------------------------


def test_reused_names_fail_alone_with_handles_and_errors(recorder: RecordingTransport) -> None:
    once = work.using(name="only-once")
    error = bulk_error(lambda: once.map([1, 2, 3]))
    assert isinstance(error, EnqueueError)
    assert isinstance(error.handles[0], TaskHandle)
    assert error.handles[0].name == "only-once"
    assert error.handles[1:] == [None, None]
    assert list(error.errors) == [1, 2]
    assert all(isinstance(e, TaskAlreadyExistsError) for e in error.errors.values())
    assert str(error).startswith(f"2 of 3 calls of {work.url} failed (1 enqueued): call 1: TaskAlreadyExistsError")
    assert len(recorder.requests) == 1


def test_an_unpicklable_argument_fails_its_own_call_only(recorder: RecordingTransport) -> None:
    error = bulk_error(lambda: work.map([1, threading.Lock(), 3]))
    assert list(error.errors) == [1]
    assert type(error.errors[1]) is EnqueueError
    assert "lock" in str(error.errors[1])
    assert [h is not None for h in error.handles] == [True, False, True]
    assert [r.name for r in recorder.requests] == [error.handles[0].name, error.handles[2].name]
    recorder.run_all()
    assert sink.calls == [1, 3]


def test_an_oversized_call_fails_alone(im_task_settings: Any) -> None:
    small = RecordingTransport(max_task_size=2000)
    configure(transport=small, payload_store="none")
    error = bulk_error(lambda: work.map(["x", "y" * 5000, "z"]))
    assert list(error.errors) == [1]
    assert isinstance(error.errors[1], TaskTooLargeError)
    assert [h is not None for h in error.handles] == [True, False, True]
    assert len(small.requests) == 2


def test_the_message_names_three_failures_and_counts_the_rest(recorder: RecordingTransport) -> None:
    error = bulk_error(lambda: work.using(name="same").map(range(7)))
    assert "6 of 7 calls" in str(error)
    assert "call 1:" in str(error)
    assert "call 3:" in str(error)
    assert "call 4:" not in str(error)
    assert "and 3 more" in str(error)


def test_bulk_enqueue_error_survives_pickling(recorder: RecordingTransport) -> None:
    error = bulk_error(lambda: work.using(name="twice").map([1, 2]))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is BulkEnqueueError
    assert str(copy) == str(error)
    assert copy.handles == error.handles
    assert list(copy.errors) == [1]
    assert isinstance(copy.errors[1], TaskAlreadyExistsError)


# -- the Transport defaults ----------------------------------------------


class OddOnly(Transport):
    """A transport with only ``enqueue``: it takes odd bodies, refuses even ones, notes the thread of each call."""

    def __init__(self) -> None:
        self.accepted: list[bytes] = []
        self.threads: list[threading.Thread] = []

    def enqueue(self, request: TaskRequest) -> str:
        self.threads.append(threading.current_thread())
        if int(request.body) % 2 == 0:
            raise TaskAlreadyExistsError(f"even {request.body!r}")
        self.accepted.append(request.body)
        return f"t{int(request.body)}"


def test_the_default_enqueue_many_sends_one_after_another_and_reports_each() -> None:
    transport = OddOnly()
    results = transport.enqueue_many([request(body=b"%d" % i) for i in range(1, 5)])
    assert results[0] == "t1"
    assert results[2] == "t3"
    assert isinstance(results[1], TaskAlreadyExistsError)
    assert isinstance(results[3], TaskAlreadyExistsError)
    assert transport.accepted == [b"1", b"3"]
    assert transport.enqueue_many([]) == []


def test_the_default_enqueue_async_runs_enqueue_in_a_worker_thread() -> None:
    transport = OddOnly()

    async def main() -> tuple[str | None, threading.Thread]:
        return await transport.enqueue_async(request(body=b"7")), threading.current_thread()

    name, loop_thread = asyncio.run(main())
    assert name == "t7"
    assert transport.threads
    assert transport.threads[0] is not loop_thread
    with pytest.raises(TaskAlreadyExistsError, match="even"):
        asyncio.run(transport.enqueue_async(request(body=b"8")))


def test_a_transport_error_outside_the_tree_is_wrapped_per_call(recorder: RecordingTransport) -> None:
    configure(transport=ResetTransport(recorder, failures=1))
    error = bulk_error(lambda: work.map([1, 2]))
    assert list(error.errors) == [0]
    assert type(error.errors[0]) is EnqueueError
    assert isinstance(error.errors[0].__cause__, ConnectionResetError)
    assert error.handles[1] is not None
    configure(transport=ResetTransport(recorder, failures=1))
    with pytest.raises(EnqueueError, match="connection reset") as info:
        asyncio.run(work.enqueue_async(3))
    assert isinstance(info.value.__cause__, ConnectionResetError)


class BatchBreaks(Transport):
    """A batch client whose ``enqueue_many`` fails as a whole, or returns too few results."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def enqueue(self, request: TaskRequest) -> str:
        raise AssertionError("bulk calls go through enqueue_many")

    def enqueue_many(self, requests: Sequence[TaskRequest]) -> list[str | Exception | None]:
        if self.mode == "raise":
            raise EnqueueError("the queue is unreachable")
        return ["only-one"]


def test_a_whole_batch_failure_fails_every_call() -> None:
    configure(transport=BatchBreaks("raise"))
    error = bulk_error(lambda: work.map([1, 2, 3]))
    assert error.handles == [None, None, None]
    assert [str(e) for e in error.errors.values()] == ["the queue is unreachable"] * 3


def test_an_enqueue_many_returning_the_wrong_number_of_results_is_an_error() -> None:
    configure(transport=BatchBreaks("short"))
    with pytest.raises(EnqueueError, match=r"broke its contract: it returned 1 results for 2 tasks") as info:
        work.map([1, 2])
    assert not isinstance(info.value, BulkEnqueueError)


# -- ImmediateTransport --------------------------------------------------


def test_immediate_map_runs_each_task_at_once_in_order(immediate: ImmediateTransport) -> None:
    handles = work.map([1, 2, 3])
    assert sink.calls == [1, 2, 3]
    assert len({h.name for h in handles}) == 3
    assert all(h.name for h in handles)
    assert [status for _, status in immediate.responses] == [200, 200, 200]


def test_immediate_map_reports_a_tasks_own_exception_as_its_calls_failure(immediate: ImmediateTransport) -> None:
    error = bulk_error(lambda: picky.map([1, 2, 3, 4]))
    assert list(error.errors) == [1]
    assert type(error.errors[1]) is ValueError  # the task's own exception, not wrapped
    assert str(error.errors[1]) == "two is not welcome"
    assert [h is not None for h in error.handles] == [True, False, True, True]  # 3 failed for good: dropped
    assert sink.calls == [1, 4]  # the calls after the failure ran too


def test_immediate_enqueue_async_runs_the_task_and_raises_its_exception(immediate: ImmediateTransport) -> None:
    handle = asyncio.run(work.enqueue_async("now"))
    assert sink.calls == ["now"]  # it ran before the await returned
    assert handle.name
    assert [status for _, status in immediate.responses] == [200]
    with pytest.raises(ValueError, match="two is not welcome"):
        asyncio.run(picky.enqueue_async(2))


# -- async ---------------------------------------------------------------


def test_enqueue_async_returns_the_handle(recorder: RecordingTransport) -> None:
    async def main() -> list[TaskHandle]:
        one = await add.enqueue_async(1, b=2)
        return [one, *await asyncio.gather(*(work.enqueue_async(i) for i in range(5)))]

    handles = asyncio.run(main())
    assert sorted(h.name or "" for h in handles) == sorted(r.name or "" for r in recorder.requests)
    assert handles[0].url == add.url
    recorder.run_all()
    assert sink.calls[0] == 3
    assert sorted(sink.calls[1:]) == [0, 1, 2, 3, 4]


def test_enqueue_async_raises_the_enqueue_errors(recorder: RecordingTransport) -> None:
    once = work.using(name="async-once")
    asyncio.run(once.enqueue_async(1))
    with pytest.raises(TaskAlreadyExistsError):
        asyncio.run(once.enqueue_async(2))
    with pytest.raises(EnqueueError, match="lock"):
        asyncio.run(work.enqueue_async(threading.Lock()))
    assert len(recorder.requests) == 1


# -- transactional=True: through the binder, one task after another -------


class MemoryOutbox:
    """An outbox storage in a dict, with transactions, and a binder sending through :mod:`im_task.outbox`."""

    description = "MemoryOutbox.transaction()"

    def __init__(self) -> None:
        self.rows: dict[int, TaskRequest] = {}
        self.pending: dict[int, TaskRequest] | None = None
        self.callbacks: list[Callable[[], object]] = []

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commits when the block ends (then runs the after-commit callbacks), rolls back when it raises."""
        self.pending, self.callbacks = {}, []
        try:
            yield
        except BaseException:
            self.pending = None
            raise
        rows, self.pending = self.pending, None
        self.rows.update(rows)
        for callback in self.callbacks:
            callback()

    # the OutboxStorage protocol
    def add(self, request: TaskRequest, owner: str) -> int:
        assert self.pending is not None
        key = len(self.rows) + len(self.pending) + 1
        self.pending[key] = request
        return key

    def after_commit(self, callback: Callable[[], object]) -> None:
        self.callbacks.append(callback)

    def claim(self, key: int, owner: str, seconds: float, older_than: float | None) -> bool:
        return key in self.rows  # one thread, one sender: every claim of a row still there succeeds

    def release(self, key: int, owner: str) -> None:
        pass

    def mark_sent(self, key: int) -> None:
        self.rows.pop(key, None)  # sent rows need no keeping here: nothing dies between send and mark

    def due(self, older_than: float, after: int | None, limit: int) -> list[tuple[int, TaskRequest]]:
        return sorted((k, r) for k, r in self.rows.items() if after is None or k > after)[:limit]

    def purge_sent(self) -> int:
        return 0

    # the TransactionBinder protocol
    def in_transaction(self) -> bool:
        return self.pending is not None

    def enqueue_on_commit(self, request: TaskRequest, transport: Transport) -> str:
        return outbox.enqueue_on_commit(self, request, transport)


@pytest.fixture
def memory_outbox() -> Iterator[MemoryOutbox]:
    binder = MemoryOutbox()
    register_binder(binder)
    yield binder
    unregister_binder(binder)


txn_work = work.using(transactional=True)


def test_transactional_map_sends_each_call_after_commit(
    recorder: RecordingTransport, memory_outbox: MemoryOutbox
) -> None:
    with memory_outbox.transaction():
        handles = txn_work.map([1, 2, 3])
        assert recorder.requests == []  # nothing before the commit
    assert [h.name for h in handles] == [r.name for r in recorder.requests]
    assert all((h.name or "").startswith(outbox.NAME_PREFIX) for h in handles)
    assert memory_outbox.rows == {}  # every row sent and marked
    recorder.run_all()
    assert sink.calls == [1, 2, 3]


def test_transactional_map_rolled_back_sends_nothing(recorder: RecordingTransport, memory_outbox: MemoryOutbox) -> None:
    def roll_back() -> None:
        with memory_outbox.transaction():
            txn_work.map([1, 2])
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        roll_back()
    assert recorder.requests == []
    assert memory_outbox.rows == {}


def test_transactional_map_without_a_transaction_raises_before_anything(
    recorder: RecordingTransport, memory_outbox: MemoryOutbox
) -> None:
    with pytest.raises(BadTransactionStateError, match=r"supported: MemoryOutbox.transaction\(\)") as info:
        txn_work.map([1, 2])
    assert not isinstance(info.value, BulkEnqueueError)
    assert recorder.requests == []


def test_transactional_map_refuses_an_oversized_call_alone(
    recorder: RecordingTransport, memory_outbox: MemoryOutbox
) -> None:
    configure(payload_store="none")  # tasks over the inline limit are refused rather than stored
    with memory_outbox.transaction():
        error = bulk_error(lambda: txn_work.map(["a", "b" * 200_000, "c"]))
    assert list(error.errors) == [1]
    assert isinstance(error.errors[1], TaskTooLargeError)
    assert [h.name for h in error.handles if h is not None] == [r.name for r in recorder.requests]
    assert len(recorder.requests) == 2


def test_transactional_enqueue_async_goes_through_the_binder(
    recorder: RecordingTransport, memory_outbox: MemoryOutbox
) -> None:
    with memory_outbox.transaction():
        handle = asyncio.run(txn_work.enqueue_async(9))
        assert recorder.requests == []
    assert [r.name for r in recorder.requests] == [handle.name]
    with pytest.raises(BadTransactionStateError):
        asyncio.run(txn_work.enqueue_async(10))


# -- LocalTransport: a real queue, a real HTTP server --------------------


def test_local_map_delivers_every_call(im_task_local_queue: ServedQueue) -> None:
    handles = work.map(range(20))
    im_task_local_queue.join()
    assert sorted(sink.calls) == list(range(20))
    stored = {t.name for t in im_task_local_queue.transport.tasks(state="done")}
    assert stored == {h.name for h in handles}


def test_local_enqueue_async_delivers(im_task_local_queue: ServedQueue) -> None:
    async def main() -> list[TaskHandle]:
        return list(await asyncio.gather(*(add.enqueue_async(i, b=100) for i in range(3))))

    handles = asyncio.run(main())
    im_task_local_queue.join()
    assert sorted(sink.calls) == [100, 101, 102]
    assert {t.name for t in im_task_local_queue.transport.tasks()} == {h.name for h in handles}


def test_local_partial_failure_stores_the_others(im_task_local_queue: ServedQueue) -> None:
    queue = im_task_local_queue.transport
    queue.stop()  # keep the tasks queued, to look at them
    configure(payload_store="none")  # tasks over the inline limit are refused rather than stored
    work.using(name="taken").map([0])
    error = bulk_error(lambda: work.starmap([(1,), (threading.Lock(),), ("y" * 200_000,), (3,)]))
    named = bulk_error(lambda: work.using(name="taken").map([4]))
    assert list(error.errors) == [1, 2]
    assert type(error.errors[1]) is EnqueueError
    assert isinstance(error.errors[2], TaskTooLargeError)
    assert isinstance(named.errors[0], TaskAlreadyExistsError)
    assert named.handles == [None]
    names = {t.name for t in queue.tasks()}
    assert names == {"taken", error.handles[0].name, error.handles[3].name}
    queue.start()
    im_task_local_queue.join()
    assert sorted(sink.calls) == [0, 1, 3]


def test_local_enqueue_many_gives_per_item_results(db: Path) -> None:
    with LocalTransport(db, autostart=False, max_task_size=1000) as queue:
        queue.enqueue(request(name="old"))
        results = queue.enqueue_many(
            [
                request(name="new"),
                request(name="old"),  # in the file already
                request(name="new"),  # twice in the batch
                request(body=b"x" * 2000),  # too large
                request(queue="bad queue"),  # malformed
                request(),  # named by the queue
            ]
        )
        assert results[0] == "new"
        assert isinstance(results[1], TaskAlreadyExistsError)
        assert "is queued" in str(results[1])
        assert isinstance(results[2], TaskAlreadyExistsError)
        assert isinstance(results[3], TaskTooLargeError)
        assert type(results[4]) is EnqueueError
        assert "Bad queue name" in str(results[4])
        assert isinstance(results[5], str)
        assert results[5]
        assert {t.name for t in queue.tasks()} == {"old", "new", results[5]}
        assert queue.enqueue_many([]) == []
    closed = queue.enqueue_many([request(), request()])
    assert [type(r) for r in closed] == [EnqueueError, EnqueueError]
    assert all("closed" in str(r) for r in closed)


def test_local_enqueue_many_commits_one_transaction(db: Path) -> None:
    with LocalTransport(db, autostart=False) as queue:
        statements: list[str] = []
        connection = queue._store._conn
        assert connection is not None
        connection.set_trace_callback(statements.append)
        results = queue.enqueue_many([request(name=f"t{i}") for i in range(10)] + [request(name="t0")])
        connection.set_trace_callback(None)
        assert isinstance(results[-1], TaskAlreadyExistsError)
        transactions = [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")]
        assert transactions == ["BEGIN IMMEDIATE", "COMMIT"]
        assert sum(s.startswith("INSERT") for s in statements) == 11


def test_local_map_is_all_or_nothing_when_the_database_fails(im_task_local_queue: ServedQueue) -> None:
    queue = im_task_local_queue.transport
    queue.stop()
    with sqlite3.connect(queue.path) as other:  # the database itself refuses a third row
        other.execute(
            "CREATE TRIGGER two_at_most BEFORE INSERT ON tasks WHEN (SELECT COUNT(*) FROM tasks) >= 2 "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    other.close()
    error = bulk_error(lambda: work.map(range(4)))
    assert error.handles == [None] * 4
    assert list(error.errors) == [0, 1, 2, 3]
    assert all(type(e) is EnqueueError and "disk on fire" in str(e) for e in error.errors.values())
    assert queue.tasks() == []  # one transaction: the first two rows went with the third
    work.map(range(2))  # two fit
    assert len(queue.tasks()) == 2
