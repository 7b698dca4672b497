"""The task endpoint marks an outbox row delivered: a sender killed after the send leaves nothing to send again."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from im_task_testsupport.reusing_queue import ReusingQueue

from django_testproject import tasks
from django_testproject.models import Note
from im_task import config
from im_task.endpoints import handle_request
from im_task.transports import InProcessTransport, RecordingTransport
from im_task_django.models import OutboxTask
from im_task_django.outbox import DjangoOutboxStorage, SweepResult, sweep_outbox
from im_task_django.transactions import binder

CHILD = """
import os, pickle, signal, sys
sys.path.insert(0, {tests!r})
from django_testproject import setup
setup()
from im_task.transactions import register_binder
from im_task_django.transactions import binder
register_binder(binder)
from django.db import transaction
from django_testproject import tasks
from django_testproject.models import Note
from im_task import configure
from im_task.transports import Transport

class DyingQueue(Transport):
    def enqueue(self, request):  # the queue takes the task, then the process dies before the sent mark
        with open({taken!r}, "wb") as file:
            pickle.dump(request, file)
        os.kill(os.getpid(), signal.SIGKILL)

configure(secret={secret!r}, transport=DyingQueue())
with transaction.atomic():
    note = Note.objects.create(text="sent, then killed")
    tasks.record_note_after_commit(note.pk)
"""


def test_a_task_whose_sender_was_killed_after_the_send_is_marked_on_delivery_and_never_sent_again(
    tmp_path: Path,
) -> None:
    taken = tmp_path / "taken.pickle"
    secret = config.get_settings().secrets[0]  # the child signs with this process's secret
    script = CHILD.format(tests=str(Path(__file__).parent), taken=str(taken), secret=secret)
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), timeout=120, check=False)
    assert done.returncode == -9
    request = pickle.loads(taken.read_bytes())
    row = OutboxTask.objects.get()
    assert (row.name, row.sent_at, row.claimed_by.startswith("sender-")) == (request.name, None, True)
    queue = ReusingQueue()
    assert queue.deliver(request).status == 200  # the queue delivers the task it took
    assert tasks.RESULTS == ["sent, then killed"]
    assert OutboxTask.objects.get().sent_at is not None  # marked by the endpoint, before the task ran
    assert sweep_outbox(older_than=0, transport=queue) == SweepResult(purged=1)
    assert queue.taken == []
    assert tasks.RESULTS == ["sent, then killed"]


def test_the_endpoint_marks_the_row_once(recorder: RecordingTransport) -> None:
    with transaction.atomic():
        name = str(tasks.record_transactional("x").name)
    OutboxTask.objects.filter(name=name).update(sent_at=None)  # as if its sender died before its sent mark
    [request] = recorder.requests
    assert recorder.run_all()[0].status == 200  # through the real endpoint
    marked = OutboxTask.objects.get(name=name).sent_at
    assert marked is not None
    assert InProcessTransport(handle_request).deliver(request).status == 200  # a queue's retry: left as it is
    assert OutboxTask.objects.get(name=name).sent_at == marked
    assert DjangoOutboxStorage().mark_delivered(name) is False
    assert tasks.RESULTS == ["x", "x"]


def test_a_killed_connection_is_retried_on_a_fresh_one(recorder: RecordingTransport) -> None:
    with transaction.atomic():
        name = tasks.record_transactional("y").name
    OutboxTask.objects.filter(name=name).update(sent_at=None)  # as if the sender died before its mark
    connection.ensure_connection()
    connection.connection.close()  # type: ignore[union-attr] - killed under Django
    assert DjangoOutboxStorage().mark_delivered(str(name)) is True
    assert OutboxTask.objects.get(name=name).sent_at is not None


def test_inside_a_transaction_the_mark_joins_it_in_a_savepoint(recorder: RecordingTransport) -> None:
    """As under ATOMIC_REQUESTS or in a TestCase: the mark commits with the request's transaction."""
    with transaction.atomic():
        name = str(tasks.record_transactional("z").name)
    OutboxTask.objects.filter(name=name).update(sent_at=None)
    with transaction.atomic():
        Note.objects.create(text="the request's own write")
        assert binder.outbox_storage.mark_delivered(name) is True
        assert binder.outbox_storage.mark_delivered("outbox-" + "0" * 32) is False
    assert OutboxTask.objects.get(name=name).sent_at is not None
    assert Note.objects.get().text == "the request's own write"


def test_a_task_that_is_not_an_outbox_task_costs_no_query(recorder: RecordingTransport) -> None:
    tasks.record("plain")
    [request] = recorder.requests
    with CaptureQueriesContext(connection) as queries:
        assert InProcessTransport(handle_request).deliver(request).status == 200
    assert tasks.RESULTS == ["plain"]
    assert [q["sql"] for q in queries.captured_queries if "im_task_outbox" in q["sql"]] == []


def test_an_outbox_task_costs_one_update(recorder: RecordingTransport) -> None:
    with transaction.atomic():
        tasks.record_transactional("once")
    [request] = recorder.requests
    with CaptureQueriesContext(connection) as queries:
        assert InProcessTransport(handle_request).deliver(request).status == 200
    outbox_sql = [q["sql"] for q in queries.captured_queries if "im_task_outbox" in q["sql"]]
    assert len(outbox_sql) == 1
    assert outbox_sql[0].startswith("UPDATE")
