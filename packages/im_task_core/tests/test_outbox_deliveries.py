"""The receiving side of the outbox: the endpoint marks an outbox task's row sent when the queue delivers it.

The one window the sending side cannot close: the process dies after the queue
took the task and before the sent mark. Here the sender's sent mark fails (as
a killed process leaves it: the row unsent, under the sender's claim), the
queue delivers the task through the real endpoint, and a sweep with a queue
that accepts reused names must not send it again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import pytest
from im_task_testsupport import sink
from im_task_testsupport.reusing_queue import ReusingQueue

from im_task import configure, outbox, task
from im_task.outbox import SweepResult, enqueue_on_commit, is_outbox_task_name, record_delivery, sweep
from im_task.state import STATE
from im_task.transactions import register_binder
from im_task.transports import RecordingTransport, TaskRequest

LEASE = 0.2


@task
def ship(order: int) -> None:
    sink.record(order)


@task
def ship_and_fail(order: int) -> None:
    sink.record(order)
    raise RuntimeError("the task's own error")


@dataclasses.dataclass
class Row:
    request: TaskRequest
    owner: str
    claimed_until: float | None = None
    sent: bool = False


class DictOutbox:
    """An outbox storage in a dict whose transactions commit at once; ``mark_sent`` fails when ``dying``.

    A failing sent mark leaves what a sender killed after the send leaves: the row unsent, under its claim.
    """

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.dying = False
        self.asked: list[str] = []  # names mark_delivered was called with

    def add(self, request: TaskRequest, owner: str) -> int:
        key = len(self.rows) + 1
        self.rows[key] = Row(request, owner)
        return key

    def after_commit(self, callback: Callable[[], object]) -> None:
        callback()

    def claim(self, key: int, owner: str, seconds: float, older_than: float | None) -> bool:
        row = self.rows.get(key)
        if row is None or row.sent:
            return False
        now = time.monotonic()
        ended = older_than is not None and row.claimed_until is not None and row.claimed_until <= now - older_than
        if row.owner != owner and not ended:
            return False
        row.owner, row.claimed_until = owner, now + seconds
        return True

    def release(self, key: int, owner: str) -> None:
        row = self.rows[key]
        if row.owner == owner and not row.sent:
            row.claimed_until = time.monotonic()

    def mark_sent(self, key: int) -> None:
        if self.dying:
            raise ConnectionError("the process died before its sent mark")
        self.rows[key].sent = True

    def mark_delivered(self, name: str) -> bool:
        self.asked.append(name)
        for row in self.rows.values():
            if row.request.name == name and not row.sent:
                row.sent = True
                return True
        return False

    def due(self, older_than: float, after: int | None, limit: int) -> list[tuple[int, TaskRequest]]:
        now = time.monotonic()
        for row in self.rows.values():
            row.claimed_until = now if row.claimed_until is None else row.claimed_until
        return [
            (key, row.request)
            for key, row in sorted(self.rows.items())
            if not row.sent and row.claimed_until is not None and row.claimed_until <= now - older_than
        ][:limit]

    def purge_sent(self) -> int:
        sent = [key for key, row in self.rows.items() if row.sent]
        for key in sent:
            del self.rows[key]
        return len(sent)

    def unsent(self) -> list[str | None]:
        return [row.request.name for row in self.rows.values() if not row.sent]


class Binder:
    """A transaction binder with an outbox, as the Django and ndb ones have."""

    description = "the test's outbox"

    def __init__(self, storage: object) -> None:
        self.outbox_storage = storage

    def in_transaction(self) -> bool:
        return False

    def enqueue_on_commit(self, request: TaskRequest, transport: object) -> str:
        raise AssertionError("not used")


def signed_request(func: object, *args: object) -> TaskRequest:
    """A real task's request (a signed envelope), unnamed, as ``transactional=True`` hands it to the outbox."""
    recorder = RecordingTransport()
    configure(transport=recorder)
    func(*args)  # type: ignore[operator]
    return dataclasses.replace(recorder.requests[-1], name=None)


@pytest.fixture
def storage() -> DictOutbox:
    outbox_storage = DictOutbox()
    register_binder(Binder(outbox_storage))  # the plugin's fixture puts the binders back after the test
    return outbox_storage


def sent_but_never_marked(storage: DictOutbox, queue: ReusingQueue, func: object = ship, order: int = 1) -> str:
    """A committed row whose send succeeded and whose sent mark never came."""
    storage.dying = True
    name = enqueue_on_commit(storage, signed_request(func, order), queue, lease=LEASE)
    storage.dying = False
    assert storage.unsent() == [name]
    assert [request.name for request in queue.taken] == [name]
    return name


def test_a_delivered_task_whose_sender_died_before_its_sent_mark_is_not_sent_again(storage: DictOutbox) -> None:
    queue = ReusingQueue()
    name = sent_but_never_marked(storage, queue)
    assert queue.deliver_all() == [200]
    assert storage.unsent() == []  # marked by the endpoint
    time.sleep(LEASE + 0.05)  # the dead sender's claim ends
    assert sweep(storage, queue, older_than=0, lease=LEASE) == SweepResult(purged=1)
    assert len(queue.taken) == 1
    assert sink.events() == [1]
    assert storage.asked == [name]


def test_without_the_delivery_the_sweep_sends_it_again(storage: DictOutbox) -> None:
    """The control: what the endpoint's mark prevents (a queue accepting reused names runs the task twice)."""
    queue = ReusingQueue()
    sent_but_never_marked(storage, queue)
    time.sleep(LEASE + 0.05)
    assert sweep(storage, queue, older_than=0, lease=LEASE) == SweepResult(sent=1)
    assert queue.deliver_all() == [200, 200]
    assert sink.events() == [1, 1]


def test_the_row_is_marked_before_the_task_runs_whatever_the_task_does(storage: DictOutbox) -> None:
    queue = ReusingQueue()
    sent_but_never_marked(storage, queue, ship_and_fail, 7)
    assert queue.deliver_all() == [500]  # the queue retries it: it has the task, so no sweep may send it
    assert storage.unsent() == []
    time.sleep(LEASE + 0.05)
    assert sweep(storage, queue, older_than=0, lease=LEASE).sent == 0


def test_a_request_whose_signature_fails_marks_nothing(storage: DictOutbox) -> None:
    queue = ReusingQueue()
    name = sent_but_never_marked(storage, queue)
    forged = dataclasses.replace(queue.taken[0], body=queue.taken[0].body[:-1] + b"x")
    assert queue.deliver(forged).status == 403
    assert storage.asked == []
    assert storage.unsent() == [name]


def test_a_task_that_is_not_an_outbox_task_asks_no_storage(storage: DictOutbox) -> None:
    queue = ReusingQueue()
    request = dataclasses.replace(signed_request(ship, 3), name="orders-3")
    assert queue.deliver(request).status == 200
    assert sink.events() == [3]
    assert storage.asked == []
    assert record_delivery("outbox-not-hex") is False
    assert storage.asked == []


def test_a_failing_mark_is_logged_and_the_task_runs(storage: DictOutbox, caplog: pytest.LogCaptureFixture) -> None:
    class BrokenOutbox(DictOutbox):
        def mark_delivered(self, name: str) -> bool:
            raise ConnectionError("the outbox's database is down")

    with STATE.lock:
        STATE.binders.insert(0, Binder(BrokenOutbox()))  # asked first, before the outbox that has the row
    queue = ReusingQueue()
    sent_but_never_marked(storage, queue)
    with caplog.at_level(logging.WARNING, logger="im_task"):
        assert queue.deliver_all() == [200]
    assert sink.events() == [1]
    assert storage.unsent() == []  # the next binder's outbox had it
    [warning] = [r for r in caplog.records if "Could not mark outbox task" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "database is down" in caplog.text


def test_binders_without_an_outbox_are_passed_over(storage: DictOutbox) -> None:
    register_binder(Binder(object()))  # an outbox without mark_delivered: a storage of an older design
    name = outbox.outbox_task_name()
    assert record_delivery(name) is False
    assert storage.asked == [name]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("outbox-" + "0123456789abcdef" * 2, True),
        ("outbox-" + "0123456789ABCDEF" * 2, False),
        ("outbox-" + "0" * 31, False),
        ("outbox-" + "0" * 33, False),
        ("orders-" + "0" * 32, False),
        ("", False),
        (None, False),
        (42, False),
    ],
)
def test_outbox_names_are_recognised_exactly(name: object, expected: bool) -> None:
    assert is_outbox_task_name(name) is expected


def test_every_fresh_outbox_name_is_recognised() -> None:
    assert all(is_outbox_task_name(outbox.outbox_task_name()) for _ in range(100))


def test_the_endpoint_calls_the_outbox_hook() -> None:
    assert STATE.delivery_hook is record_delivery
