"""Large payloads and transactional tasks on google-cloud-ndb, end to end against the Datastore emulator.

Each test runs tasks through a real WSGI server on 127.0.0.1 and the local
queue (see conftest.py); payloads go to an :class:`~im_task.stores.NdbPayloadStore`,
transactional tasks through the ndb outbox.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from google.cloud import ndb
from im_task_testsupport import ndb_tasks, sink
from im_task_testsupport.processes import SRC

from im_task import BadTransactionStateError, configure
from im_task.sweeping import sweep_outbox
from im_task.transports import RecordingTransport

Datastore = Any  # the fixture of conftest.py

SUPPORT = str(Path(__file__).resolve().parents[1] / "support")
SECRET = "datastore-tests-secret-0123456789abcdef"


class Order(ndb.Model):
    """An application entity written in the same transactions as the tasks."""

    number = ndb.IntegerProperty()


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def payload_keys(datastore: Datastore) -> list[str]:
    with datastore.client.context():
        return [str(k.id()) for k in ndb.Query(kind="_ImTaskPayload").fetch(keys_only=True)] + [
            str(k.id()) for k in ndb.Query(kind="_ImTaskPayloadChunk").fetch(keys_only=True)
        ]


@pytest.mark.parametrize("megabytes", [3, 10])
def test_a_large_argument_arrives_intact_and_its_payload_is_deleted(datastore: Datastore, megabytes: int) -> None:
    data = blob(megabytes * 1_000_000, megabytes)
    handle = ndb_tasks.digest.using(name=f"big-{megabytes}", countdown=0)(data)
    assert handle.name == f"big-{megabytes}"
    assert payload_keys(datastore), "the payload is in Datastore while the task waits"
    assert sink.wait_for(1, timeout=60) == [("digest", len(data), hashlib.sha256(data).hexdigest())]
    datastore.queue.join()
    assert payload_keys(datastore) == []


def test_a_payload_is_split_into_entities_of_1_000_000_bytes(datastore: Datastore) -> None:
    """docs/payloads.md: a head entity and _ImTaskPayloadChunk children; a 10 MB argument is eleven entities."""
    exactly_ten = datastore.store.put(b"x" * 10_000_000)
    assert len(payload_keys(datastore)) == 10
    datastore.store.delete(exactly_ten)
    assert payload_keys(datastore) == []
    pickled_call = b"x" * 10_000_100  # a 10 MB argument and the call around it
    key = datastore.store.put(pickled_call)
    assert len(payload_keys(datastore)) == 11
    assert datastore.store.get(key) == pickled_call
    datastore.store.delete(key)


def test_a_retried_task_still_finds_its_payload(datastore: Datastore) -> None:
    data = blob(300_000, 7)
    ndb_tasks.digest_after_a_failure(data)
    assert sink.wait_for(1, timeout=60) == [("retried", len(data), hashlib.sha256(data).hexdigest())]
    datastore.queue.join()
    assert payload_keys(datastore) == []


def test_a_rolled_back_transaction_leaves_no_task_no_outbox_entry_and_no_payload(datastore: Datastore) -> None:
    class Boom(Exception):
        pass

    def work() -> None:
        Order(number=1).put()
        ndb_tasks.record_id(1)
        ndb_tasks.record_id(2, blob(250_000, 2))  # a large one: its payload is written in the transaction
        raise Boom

    with datastore.client.context(), pytest.raises(Boom):
        ndb.transaction(work)
    datastore.queue.join()
    time.sleep(0.5)
    assert sink.events() == []
    assert datastore.queue.transport.tasks() == []
    assert datastore.binder.outbox_storage.entries() == []
    assert payload_keys(datastore) == []
    with datastore.client.context():
        assert Order.query().fetch() == []


def test_a_committed_transaction_runs_each_task_once_and_a_retried_attempt_sends_nothing(
    datastore: Datastore,
) -> None:
    attempts = []

    def work() -> None:
        attempts.append(1)
        Order(number=len(attempts)).put()
        ndb_tasks.record_id(10)
        ndb_tasks.record_id(11, blob(250_000, 11))
        if len(attempts) == 1:  # ndb retries the transaction on this error, dropping this attempt's callbacks
            from google.api_core.exceptions import Aborted

            raise Aborted("contention, on purpose")

    with datastore.client.context():
        ndb.transaction(work, retries=2)
    assert len(attempts) == 2
    assert sorted(sink.wait_for(2, timeout=30)) == [10, 11]
    datastore.queue.join()
    time.sleep(0.5)
    assert sorted(sink.events()) == [10, 11]
    assert len(datastore.queue.transport.tasks()) == 2
    assert all(entry["sent"] for entry in datastore.binder.outbox_storage.entries())
    assert payload_keys(datastore) == []  # delivered, so deleted; the first attempt's never existed
    assert sweep_outbox(0).purged == 2


def test_transactional_outside_a_transaction_is_refused(datastore: Datastore) -> None:
    with pytest.raises(BadTransactionStateError, match=r"ndb\.transaction"):
        ndb_tasks.record_id(1)
    with datastore.client.context(), pytest.raises(BadTransactionStateError):
        ndb_tasks.record_id(2)


def test_a_tampered_payload_fails_permanently_without_being_unpickled(
    datastore: Datastore, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    ndb_tasks.keep(sink.Tripwire(), blob(400_000, 3))  # unpickling it would record "unpickled"
    (request,) = recorder.requests
    (head,) = [k for k in payload_keys(datastore) if len(k) == 32]
    with datastore.client.context():
        entity = ndb.Key("_ImTaskPayload", head).get()
        altered = bytearray(entity.data)
        altered[-1000] ^= 0xFF  # inside the random bytes: the pickle stays valid
        entity.data = bytes(altered)
        entity.put()
    configure(transport=datastore.queue.transport)
    with caplog.at_level(logging.ERROR, logger="im_task"):
        datastore.queue.transport.enqueue(request)  # delivered over HTTP by the local queue
        datastore.queue.join()
    assert sink.events() == []  # neither run nor unpickled
    assert "does not match its signed SHA-256" in caplog.text
    (dropped,) = datastore.queue.transport.tasks()
    assert (dropped.state, dropped.last_status) == ("dropped", 200)  # answered 200 (outcome dropped), never retried
    assert payload_keys(datastore) == []


# -- fault injection: the send after commit fails, or the process dies right after the commit ------------------

CHILD = textwrap.dedent(
    """
    import os, random, signal, sys
    from google.cloud import ndb
    from im_task import configure, EnqueueError
    from im_task.ndb import install_outbox
    from im_task.stores import NdbPayloadStore
    from im_task.transports import LocalTransport, Transport
    from im_task_testsupport import ndb_tasks

    first, count, mode, db, seed = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    LEASE = float(sys.argv[6])
    rng = random.Random(seed)
    queue = LocalTransport(db, autostart=False)

    class Flaky(Transport):
        max_task_size = queue.max_task_size
        def enqueue(self, request):
            if request.name not in last and rng.random() < 0.3:
                raise EnqueueError("the queue cannot be reached (injected)")
            name = queue.enqueue(request)
            if mode == "after-send" and request.name in last:
                os.kill(os.getpid(), signal.SIGKILL)  # sent, but the sent mark is never written
            return name

    last = set()
    client = ndb.Client()
    configure(secret=os.environ["SECRET"], transport=Flaky(), payload_store=NdbPayloadStore(client))
    install_outbox(client, lease=LEASE)  # a killed sender's claim ends after LEASE seconds
    with client.context():
        for number in range(first, first + count):
            final = number == first + count - 1
            def work():
                if final and mode == "after-commit":
                    ndb.get_context().call_on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
                padding = b"x" * 150_000 if number % 10 == 0 else b""
                handle = ndb_tasks.record_id(number, padding)
                if final:
                    last.add(handle.name)
            ndb.transaction(work)
    print("not killed")
    """
)

LEASE = 2.0
RUNS = 10
PER_RUN = 20


def test_every_committed_task_is_delivered_once_despite_failed_sends_and_killed_processes(
    datastore: Datastore, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(secret=SECRET)
    queue = datastore.queue.transport
    env = {
        **os.environ,
        "SECRET": SECRET,
        "PYTHONPATH": os.pathsep.join([SRC, SUPPORT, os.environ.get("PYTHONPATH", "")]),
    }
    killed = collections.Counter()
    for run in range(RUNS):
        mode = "after-commit" if run % 2 == 0 else "after-send"
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(run * PER_RUN),
                str(PER_RUN),
                mode,
                str(queue.path),
                str(run),
                str(LEASE),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert child.returncode == -9, child.stderr[-2000:]
        killed[mode] += 1
    total = RUNS * PER_RUN
    before = collections.Counter(entry["sent"] for entry in datastore.binder.outbox_storage.entries())
    time.sleep(LEASE + 0.5)  # the claims of the senders killed after their send end
    result = sweep_outbox(0, lease=5)
    queue.join()
    datastore.queue.join()
    delivered = collections.Counter(sink.wait_for(total, timeout=120))
    time.sleep(1)
    delivered = collections.Counter(sink.events())
    assert set(delivered) == set(range(total)), sorted(set(range(total)) - set(delivered))
    assert max(delivered.values()) == 1, [n for n, c in delivered.items() if c > 1]
    assert result.failed == 0
    assert result.sent + result.already_sent <= before[False]  # less those the endpoint marked as they arrived
    assert result.already_sent == 0  # sent before the kill: delivered, so marked by the endpoint, never re-sent
    with capsys.disabled():
        print(
            f"\nndb outbox fault injection: {total} transactions in {RUNS} processes, {killed['after-commit']} killed "
            f"right after a commit, {killed['after-send']} right after a send; {before[False]} left unsent "
            f"(injected send failures and kills); sweep: {result.sent} sent, {result.already_sent} refused as "
            f"already sent; delivered {len(delivered)} tasks, each once."
        )
    assert payload_keys(datastore) == []


def test_a_large_task_sent_at_once_inside_a_transaction_finds_its_payload_before_the_commit(
    datastore: Datastore,
) -> None:
    """Not transactional: sent now, so its payload is written outside the open transaction, at once."""
    data = blob(400_000, 11)
    recorder = RecordingTransport()
    configure(transport=recorder)
    delivered: list[int] = []

    def work() -> None:
        ndb_tasks.digest(data)  # sent at once, inside the transaction
        delivered.extend(response.status for response in recorder.run_all())  # the queue is faster than the commit

    with datastore.client.context():
        ndb.transaction(work)
    assert delivered == [200]
    assert sink.events() == [("digest", len(data), hashlib.sha256(data).hexdigest())]


def test_a_payload_whose_head_write_fails_leaves_no_chunks(
    datastore: Datastore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put outside a transaction writes the chunks first: when the head then fails, they are deleted."""

    def failing_put(self: Any, **options: Any) -> Any:
        raise RuntimeError("the head write failed")

    monkeypatch.setattr(datastore.store._head, "put", failing_put)
    with pytest.raises(RuntimeError, match="the head write failed"):
        datastore.store.put(b"x" * 3_500_000, in_transaction=False)  # a head and three chunks
    monkeypatch.undo()

    def chunks() -> list[Any]:
        return list(ndb.Query(kind="_ImTaskPayloadChunk").fetch(keys_only=True))

    with datastore.client.context():
        assert chunks() == []
    assert datastore.store.keys() == []


def test_the_endpoint_marks_an_outbox_entity_delivered_by_its_task_name(datastore: Datastore) -> None:
    storage = datastore.binder.outbox_storage
    recorder = RecordingTransport()
    configure(transport=recorder)
    with datastore.client.context():
        ndb.transaction(lambda: ndb_tasks.record_id(5))
    [entry] = storage.entries()
    assert entry["key"] == str(entry["name"]).removeprefix("outbox-")  # found by name: a lookup, no query
    with datastore.client.context():
        entity = ndb.Key(storage.kind, entry["key"]).get()
        entity.sent = False  # as if its sender died after the send, before its sent mark
        entity.put()
    assert recorder.run_all()[0].status == 200  # the real endpoint marks it before the task runs
    assert sink.wait_for(1) == [5]
    assert [e["sent"] for e in storage.entries()] == [True]
    assert storage.mark_delivered(entry["name"]) is False
    assert storage.mark_delivered("outbox-" + "0" * 32) is False
    assert storage.mark_delivered("not-an-outbox-name") is False
    assert sweep_outbox(0).sent == 0
