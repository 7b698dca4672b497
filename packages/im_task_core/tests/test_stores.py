"""Payload stores without Google Cloud: signed references, the local store, the large-payload path, the sweep route."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport import sink

from im_task import ConfigurationError, SignatureError, configure, task
from im_task.config import get_keyring
from im_task.endpoints import SWEEP_PATH, handle_request
from im_task.envelope import PayloadReference, open_sealed, seal_reference
from im_task.keys import Keyring
from im_task.outbox import SweepResult
from im_task.stores import LocalPayloadStore, get_payload_store
from im_task.sweeping import sweep_outbox
from im_task.transports import ImmediateTransport, LocalTransport, RecordingTransport
from im_task.wsgi import TaskWSGIApp

KEY = b"k" * 32


@task
def checksum(data: bytes) -> None:
    sink.record(len(data), hashlib.sha256(data).hexdigest())


def test_a_reference_is_signed_and_every_altered_byte_is_refused() -> None:
    keyring = Keyring([KEY])
    reference = PayloadReference.of("local", "abc", b"payload")
    body = seal_reference(reference, keyring)
    assert open_sealed(body, keyring) == reference
    assert reference.matches(b"payload")
    assert not reference.matches(b"payloaD")
    for index in range(len(body)):
        forged = bytearray(body)
        forged[index] ^= 0x01
        with pytest.raises(SignatureError):
            open_sealed(bytes(forged), keyring)


def test_the_local_store_puts_gets_deletes_and_sweeps(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path / "p.sqlite3")
    key = store.put(b"x" * 300_000)
    assert store.get(key) == b"x" * 300_000
    assert store.get("missing") is None
    store.delete(key)
    store.delete(key)  # gone already: fine
    assert store.keys() == []
    store.put(b"old")
    assert store.sweep(older_than=3600) == 0
    assert store.sweep(older_than=0) == 1
    with pytest.raises(ConfigurationError, match="older_than"):
        store.sweep(older_than=-1)


def test_the_payload_store_setting_is_checked() -> None:
    for bad in (3, "ndb:", "bad name", LocalPayloadStore):
        with pytest.raises(ConfigurationError, match="payload_store must be"):
            configure(payload_store=bad)
    configure(payload_store="local")
    assert isinstance(get_payload_store(), LocalPayloadStore)


def test_a_large_call_travels_as_a_reference_and_its_payload_is_deleted_after_the_run(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path / "payloads.sqlite3")
    recorder = RecordingTransport()
    configure(transport=recorder, payload_store=store)
    data = bytes(range(256)) * 4000  # 1 MB
    handle = checksum.using(name="big", countdown=5)(data)
    (request,) = recorder.requests
    assert (handle.name, request.name, request.schedule_time is not None) == ("big", "big", True)
    assert len(request.body) < 1000
    reference = open_sealed(request.body, get_keyring())
    assert isinstance(reference, PayloadReference)
    assert reference.sha256 == hashlib.sha256(store.get(reference.key) or b"").hexdigest()
    recorder.run_all()
    assert sink.events() == [(len(data), hashlib.sha256(data).hexdigest())]
    assert store.keys() == []


def test_through_the_local_queue_a_retried_task_keeps_its_payload_and_a_missing_one_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalPayloadStore(tmp_path / "payloads.sqlite3")
    queue = LocalTransport(tmp_path / "q.sqlite3", target=TaskWSGIApp(), autostart=False)
    configure(transport=queue, payload_store=store)
    try:
        checksum(b"y" * 200_000)
        checksum(b"z" * 200_000)
        stored = store.keys()
        (second,) = [key for key in stored if b"z" in (store.get(key) or b"")]
        store.delete(second)
        queue.start()
        queue.join(timeout=30)
    finally:
        queue.close()
    assert sink.events() == [(200_000, hashlib.sha256(b"y" * 200_000).hexdigest())]
    assert "is missing" in caplog.text
    assert store.keys() == []
    with LocalTransport(tmp_path / "q.sqlite3", autostart=False) as reopened:
        assert sorted(t.state for t in reopened.tasks()) == ["done", "dropped"]  # the missing one was dropped


def test_payload_store_none_refuses_large_tasks_as_before() -> None:
    from im_task import TaskTooLargeError

    configure(transport=ImmediateTransport(), payload_store="none")
    with pytest.raises(TaskTooLargeError):
        checksum(b"x" * 200_000)


class _Outbox:
    """An outbox whose rows all went out: the sweep has nothing to send."""

    def purge_sent(self) -> int:
        return 2

    def due(self, older_than: float, after: Any, limit: int) -> list[Any]:
        return []


class _Binder:
    description = "a test outbox"
    outbox_storage = _Outbox()

    def in_transaction(self) -> bool:
        return False


def test_sweep_outbox_needs_an_outbox_and_sums_every_outbox(monkeypatch: pytest.MonkeyPatch) -> None:
    from im_task.transactions import register_binder, unregister_binder

    configure(transport=RecordingTransport())
    with pytest.raises(ConfigurationError, match="No outbox to sweep"):
        sweep_outbox()
    binder = _Binder()
    register_binder(binder)  # type: ignore[arg-type]
    try:
        assert sweep_outbox(0) == SweepResult(purged=2)
        assert handle_request("GET", SWEEP_PATH, b"", {}).status == 200
        configure(environment="production")
        monkeypatch.setenv("GAE_ENV", "standard")  # X-Appengine-Cron proves cron on App Engine only
        assert handle_request("GET", SWEEP_PATH, b"", {}).status == 403
        answer = handle_request("GET", SWEEP_PATH, b"", {"X-Appengine-Cron": "true"})
        assert (answer.status, answer.body) == (200, b"Swept: sent=0, already_sent=0, failed=0, taken=0, purged=2\n")
        assert handle_request("PUT", SWEEP_PATH, b"", {}).status == 405
    finally:
        unregister_binder(binder)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [({}, "local"), ({"GAE_ENV": "standard"}, "ndb"), ({"K_SERVICE": "my-service"}, "ndb")],
)
def test_the_default_payload_store_is_ndb_on_google_cloud_and_local_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variables: dict[str, str], expected: str
) -> None:
    if expected == "ndb":
        pytest.importorskip("google.cloud.ndb", reason="the ndb store needs im-task[gcp]")
    from im_task.stores.base import make_payload_store

    for name in ("GAE_ENV", "K_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert make_payload_store(None, data_dir=tmp_path).name == expected
