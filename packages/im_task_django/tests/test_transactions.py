"""transactional=True inside transaction.atomic(): the outbox, the send after commit, the sweeper."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections, transaction
from django.db.models import QuerySet
from django.test import override_settings
from django.utils import timezone
from im_task_testsupport.faulty_transports import AnswerLostTransport, ResetTransport

from django_testproject import tasks
from django_testproject.models import Note
from im_task import (
    BadTransactionStateError,
    ConfigurationError,
    TaskTooLargeError,
    config,
    configure,
    task,
)
from im_task.endpoints import handle_request
from im_task.retry import RetryOptions
from im_task.state import STATE
from im_task.transports import ImmediateTransport, LocalTransport, RecordingTransport, TaskRequest
from im_task_django.models import OutboxTask
from im_task_django.outbox import SweepResult, sweep_outbox
from im_task_django.transactions import DjangoTransactionBinder


def unsent(using: str = "default") -> QuerySet[OutboxTask]:
    """Outbox rows not marked sent (rows marked sent stay until a sweep deletes them)."""
    return OutboxTask.objects.using(using).filter(sent_at__isnull=True)


@pytest.fixture
def local_queue(tmp_path: Path) -> Iterator[LocalTransport]:
    with LocalTransport(tmp_path / "queue.sqlite3") as queue:  # delivers to the project in process
        yield queue


def test_commit_sends_the_task_once(local_queue: LocalTransport) -> None:
    configure(transport=local_queue)
    with transaction.atomic():
        note = Note.objects.create(text="committed")
        handle = tasks.record_note_after_commit(note.pk)
        assert OutboxTask.objects.filter(name=handle.name).exists()
    local_queue.join(timeout=30)
    assert tasks.RESULTS == ["committed"]
    assert str(handle.name).startswith("outbox-")
    assert not unsent().exists()
    assert sweep_outbox(older_than=0, transport=local_queue) == SweepResult(purged=1)  # the sent row is cleaned up


def test_rollback_leaves_no_task_and_no_row(recorder: RecordingTransport) -> None:
    def work() -> None:
        with transaction.atomic():
            note = Note.objects.create(text="rolled back")
            tasks.record_note_after_commit(note.pk)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        work()
    assert recorder.requests == []
    assert not OutboxTask.objects.exists()
    assert not Note.objects.exists()


def test_savepoint_rollback_drops_only_its_task(recorder: RecordingTransport) -> None:
    def inner() -> None:
        with transaction.atomic():
            tasks.record_transactional("inner")
            raise RuntimeError("roll back the savepoint")

    with transaction.atomic():
        tasks.record_transactional("outer")
        with pytest.raises(RuntimeError):
            inner()
    assert len(recorder.requests) == 1
    recorder.run_all()
    assert tasks.RESULTS == ["outer"]
    assert not unsent().exists()


def test_outside_atomic_is_bad_transaction_state(recorder: RecordingTransport) -> None:
    with pytest.raises(BadTransactionStateError, match=r"transaction\.atomic"):
        tasks.record_transactional("nowhere")
    assert recorder.requests == []
    assert not unsent().exists()


def test_immediate_transport_runs_after_commit() -> None:
    configure(transport=ImmediateTransport())
    with transaction.atomic():
        note = Note.objects.create(text="visible to the task")
        tasks.record_note_after_commit(note.pk)
        assert tasks.RESULTS == []
    assert tasks.RESULTS == ["visible to the task"]
    assert not unsent().exists()


def test_immediate_transport_error_reaches_the_committer() -> None:
    configure(transport=ImmediateTransport())
    failing = task(tasks.crash.func, transactional=True)

    def work() -> None:
        with transaction.atomic():
            Note.objects.create(text="kept")
            failing()

    with pytest.raises(RuntimeError, match="internal detail"):
        work()
    assert Note.objects.count() == 1  # committed before the task ran
    assert not unsent().exists()


def test_too_large_is_refused_inside_the_transaction() -> None:
    configure(transport=RecordingTransport(max_task_size=2048), payload_store="none")
    with transaction.atomic():
        with pytest.raises(TaskTooLargeError):
            tasks.record_transactional("x" * 4096)
        assert not OutboxTask.objects.exists()


def test_failed_send_stays_for_the_sweeper(tmp_path: Path, local_queue: LocalTransport) -> None:
    closed = LocalTransport(tmp_path / "closed.sqlite3", autostart=False)
    closed.close()  # a queue that cannot be reached: enqueue raises EnqueueError
    configure(transport=closed)
    with transaction.atomic():
        tasks.record_transactional("swept")
    assert OutboxTask.objects.count() == 1
    assert sweep_outbox(older_than=3600, transport=local_queue) == SweepResult()  # too young
    assert sweep_outbox(older_than=0, transport=local_queue) == SweepResult(sent=1)
    local_queue.join(timeout=30)
    assert tasks.RESULTS == ["swept"]
    assert not unsent().exists()


def test_resweep_of_a_sent_task_is_refused_by_name(
    local_queue: LocalTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(STATE, "delivery_hook", None)  # no delivery marks (test_outbox_deliveries.py): names alone
    configure(transport=AnswerLostTransport(local_queue))
    with transaction.atomic():
        tasks.record_transactional("once")
    assert unsent().count() == 1  # sent, but the sender could not know
    assert sweep_outbox(older_than=0, transport=local_queue) == SweepResult(already_sent=1)
    local_queue.join(timeout=30)
    assert tasks.RESULTS == ["once"]
    assert not unsent().exists()


def test_process_dying_after_commit_is_repaired_by_the_sweeper(local_queue: LocalTransport) -> None:
    secret = config.get_settings().secrets[0]  # the child signs with this process's secret
    script = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from django_testproject import setup
setup()
from im_task.transactions import register_binder
from im_task_django.transactions import binder
register_binder(binder)
from django.db import transaction
from django_testproject import tasks
from django_testproject.models import Note
from im_task import configure
from im_task.transports import RecordingTransport
configure(secret={secret!r}, transport=RecordingTransport())
with transaction.atomic():
    transaction.on_commit(lambda: os._exit(17))  # runs first: the process dies before the send
    note = Note.objects.create(text="survived the crash")
    tasks.record_note_after_commit(note.pk)
"""
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), timeout=120, check=False)
    assert done.returncode == 17
    assert Note.objects.get().text == "survived the crash"
    assert unsent().count() == 1
    assert sweep_outbox(older_than=0, transport=local_queue) == SweepResult(sent=1)
    local_queue.join(timeout=30)
    assert tasks.RESULTS == ["survived the crash"]
    assert sweep_outbox(older_than=0, transport=local_queue) == SweepResult(purged=1)


@pytest.mark.parametrize("use_tz", [True, False])
def test_outbox_keeps_every_task_option(tmp_path: Path, use_tz: bool) -> None:
    closed = LocalTransport(tmp_path / "closed.sqlite3", autostart=False)
    closed.close()
    configure(transport=closed)
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    with_options = task(
        tasks.record.func,
        transactional=True,
        queue="mail",
        eta=eta,
        target="worker",
        dispatch_deadline=dt.timedelta(seconds=90),
        retry_options={"task_retry_limit": 3, "min_backoff_seconds": 2.5},
        headers={"X-Custom": "kept"},
    )
    with override_settings(USE_TZ=use_tz), transaction.atomic():
        handle = with_options("options")
    recorder = RecordingTransport(handle_request)  # not installed, so given the endpoints to run_all() on
    with override_settings(USE_TZ=use_tz):
        assert sweep_outbox(older_than=0, transport=recorder).sent == 1
    [sent] = recorder.requests
    assert sent.name == handle.name
    assert (sent.queue, sent.url, sent.target) == ("mail", with_options.url, "worker")
    assert sent.schedule_time == eta
    assert sent.dispatch_deadline == dt.timedelta(seconds=90)
    assert sent.retry_options == RetryOptions(task_retry_limit=3, min_backoff_seconds=2.5)
    assert sent.headers["X-Custom"] == "kept"
    recorder.run_all()
    assert tasks.RESULTS == ["options"]


def test_another_database(recorder: RecordingTransport) -> None:
    with override_settings(IM_TASK={"DATABASE": "other"}):
        with transaction.atomic(), pytest.raises(BadTransactionStateError):
            tasks.record_transactional("wrong database")
        with transaction.atomic(using="other"):
            tasks.record_transactional("other database")
            assert OutboxTask.objects.using("other").count() == 1
            assert not OutboxTask.objects.using("default").exists()
        assert len(recorder.requests) == 1
        assert not unsent("other").exists()


def test_binder_with_a_fixed_alias() -> None:
    binder = DjangoTransactionBinder(using="other")
    assert binder.using == "other"
    assert not binder.in_transaction()
    with transaction.atomic(using="other"):
        assert binder.in_transaction()
    with transaction.atomic():
        assert not binder.in_transaction()


def test_sweep_arguments_are_checked() -> None:

    with pytest.raises(ConfigurationError, match="older_than"):
        sweep_outbox(-1)
    with pytest.raises(ConfigurationError, match="limit"):
        sweep_outbox(0, limit=0)
    with pytest.raises(ConfigurationError, match="DATABASES"):
        sweep_outbox(0, using="replica")


def test_sweep_reads_in_batches_and_honours_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import im_task.outbox

    closed = LocalTransport(tmp_path / "closed.sqlite3", autostart=False)
    closed.close()
    configure(transport=closed)
    for number in range(5):
        with transaction.atomic():
            tasks.record_transactional(number)
    monkeypatch.setattr(im_task.outbox, "SWEEP_BATCH", 2)
    recorder = RecordingTransport(handle_request)
    assert sweep_outbox(older_than=0, transport=recorder, limit=3) == SweepResult(sent=3)
    assert sweep_outbox(older_than=0, transport=recorder) == SweepResult(sent=2, purged=3)
    recorder.run_all()
    assert tasks.RESULTS == [0, 1, 2, 3, 4]


def test_unexpected_transport_error_after_commit_keeps_the_row(caplog: pytest.LogCaptureFixture) -> None:
    recorder = RecordingTransport(handle_request)  # not installed, so given the endpoints to run_all() on
    configure(transport=ResetTransport(recorder))
    with caplog.at_level(logging.ERROR, logger="im_task"), transaction.atomic():
        handle = tasks.record_transactional("not lost")
    assert recorder.requests == []
    assert OutboxTask.objects.filter(name=handle.name).exists()  # kept for the sweeper
    assert any("stays in the outbox" in r.getMessage() and r.exc_info for r in caplog.records)
    assert sweep_outbox(older_than=0, transport=recorder) == SweepResult(sent=1)
    recorder.run_all()
    assert tasks.RESULTS == ["not lost"]
    assert not unsent().exists()


def test_sweep_counts_an_unexpected_error_as_failed_and_goes_on(tmp_path: Path) -> None:
    closed = LocalTransport(tmp_path / "closed.sqlite3", autostart=False)
    closed.close()
    configure(transport=closed)
    for number in range(3):
        with transaction.atomic():
            tasks.record_transactional(number)
    first = OutboxTask.objects.order_by("pk").first()
    assert first is not None
    recorder = RecordingTransport(handle_request)
    assert sweep_outbox(older_than=0, transport=ResetTransport(recorder)) == SweepResult(sent=2, failed=1)
    assert list(unsent().values_list("name", flat=True)) == [first.name]
    assert sweep_outbox(older_than=0, transport=recorder) == SweepResult(sent=1, purged=2)
    recorder.run_all()
    assert sorted(tasks.RESULTS) == [0, 1, 2]


def test_wrong_database_error_names_the_configured_alias(recorder: RecordingTransport) -> None:
    with transaction.atomic(using="other"), pytest.raises(BadTransactionStateError) as raised:
        tasks.record_transactional("wrong database")
    message = str(raised.value)
    assert "transaction.atomic(using='default')" in message
    assert "IM_TASK['DATABASE']" in message
    assert "a transaction is open on 'other'" in message
    with (
        override_settings(IM_TASK={"DATABASE": "other"}),
        transaction.atomic(),
        pytest.raises(BadTransactionStateError, match=r"atomic\(using='other'\).*open on 'default'"),
    ):
        tasks.record_transactional("wrong database")
    with pytest.raises(BadTransactionStateError) as outside:
        tasks.record_transactional("no transaction")
    assert "transaction is open" not in str(outside.value)
    assert recorder.requests == []


def test_binder_description_can_be_replaced() -> None:
    binder = DjangoTransactionBinder(using="other")
    assert "DjangoTransactionBinder(using=...)" in binder.description
    binder.description = "the reporting database's transaction.atomic()"
    assert binder.description == "the reporting database's transaction.atomic()"
    with pytest.raises(ConfigurationError, match="non-empty string"):
        binder.description = ""


# Claims, ages from the commit, sent marks, and no error after a commit.


class SweepingQueue(RecordingTransport):
    """A queue whose every send lets a sweep run first, as a racing cron would."""

    def __init__(self, older_than: float = 0) -> None:
        super().__init__(handle_request)
        self.older_than = older_than
        self.sweeps: list[SweepResult] = []

    def enqueue(self, request: TaskRequest) -> str | None:
        self.sweeps.append(sweep_outbox(older_than=self.older_than, transport=self))
        return super().enqueue(request)


def test_a_sweep_during_the_send_after_commit_leaves_the_row_alone() -> None:
    queue = SweepingQueue()
    configure(transport=queue)
    with transaction.atomic():
        handle = tasks.record_transactional("once")
    assert queue.sweeps == [SweepResult()]  # the sender held the row: the sweep did not send it
    assert [request.name for request in queue.requests] == [handle.name]
    assert not unsent().exists()


def test_a_sweep_that_sees_the_commit_first_keeps_the_sender_away(caplog: pytest.LogCaptureFixture) -> None:
    recorder = RecordingTransport(handle_request)
    configure(transport=recorder)
    swept: list[SweepResult] = []
    with caplog.at_level(logging.INFO, logger="im_task"), transaction.atomic():
        transaction.on_commit(lambda: swept.append(sweep_outbox(older_than=0, transport=recorder)))  # runs first
        handle = tasks.record_transactional("once")
    assert swept == [SweepResult(sent=1)]
    assert [request.name for request in recorder.requests] == [handle.name]  # the sender did not send it again
    assert any("claimed by a sweep" in r.getMessage() for r in caplog.records)


def test_a_long_transaction_is_not_swept_while_its_send_is_under_way() -> None:
    """The threshold counts from the commit, not from the task call."""
    queue = SweepingQueue(older_than=1)
    configure(transport=queue)
    with transaction.atomic():
        handle = tasks.record_transactional("slow transaction")
        OutboxTask.objects.filter(name=handle.name).update(created=timezone.now() - dt.timedelta(hours=1))
    assert queue.sweeps == [SweepResult()]
    assert [request.name for request in queue.requests] == [handle.name]


def test_a_killed_connection_after_the_send_does_not_reach_the_committer(caplog: pytest.LogCaptureFixture) -> None:
    class KillingQueue(RecordingTransport):
        """Sends, then kills the database connection the sent mark will use."""

        def enqueue(self, request: TaskRequest) -> str | None:
            name = super().enqueue(request)
            raw = connections["default"].connection
            assert raw is not None
            raw.close()  # as a restarted server or a killed backend does
            return name

    queue = KillingQueue(handle_request)
    configure(transport=queue)
    with caplog.at_level(logging.WARNING, logger="im_task.django"), transaction.atomic():
        note = Note.objects.create(text="kept")
        tasks.record_note_after_commit(note.pk)
    assert len(queue.requests) == 1
    assert not unsent().exists()  # marked sent on a fresh connection
    assert any("retrying on a fresh connection" in r.getMessage() for r in caplog.records)
    assert sweep_outbox(older_than=0, transport=queue) == SweepResult(purged=1)
    assert len(queue.requests) == 1


def test_a_sent_mark_that_cannot_be_written_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class TableGoneQueue(RecordingTransport):
        """Sends, then the outbox table cannot be written (renamed away), on any connection."""

        def enqueue(self, request: TaskRequest) -> str | None:
            name = super().enqueue(request)
            with connections["default"].cursor() as cursor:
                cursor.execute("ALTER TABLE im_task_outbox RENAME TO im_task_outbox_away")
            return name

    queue = TableGoneQueue(handle_request)
    configure(transport=queue)
    try:
        with caplog.at_level(logging.ERROR, logger="im_task"), transaction.atomic():
            Note.objects.create(text="committed")
            tasks.record_transactional("sent")  # atomic() does not raise: the transaction committed
    finally:
        with connections["default"].cursor() as cursor:
            cursor.execute("ALTER TABLE im_task_outbox_away RENAME TO im_task_outbox")
    assert Note.objects.count() == 1
    assert len(queue.requests) == 1
    assert any("could not be marked sent" in r.getMessage() for r in caplog.records)
    assert unsent().count() == 1  # left to the sweep, still claimed by its sender
    assert sweep_outbox(older_than=0, transport=queue) == SweepResult()


def test_the_outbox_migrations_match_the_model() -> None:
    out = io.StringIO()
    call_command("makemigrations", "im_task_django", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
