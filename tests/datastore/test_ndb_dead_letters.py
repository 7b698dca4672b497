"""Dead letters in Datastore (``NdbDeadLetterStore``), against the Datastore emulator."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from im_task_testsupport import dead_tasks, sink

from im_task.cli import main
from im_task.dead import describe, replay
from im_task.deadletter import DeadLetter
from im_task.errors import ConfigurationError
from im_task.stores.deadletters import get_dead_letter_store

ndb = pytest.importorskip("google.cloud.ndb")

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def letter(name: str, queue: str = "default", **changes: object) -> DeadLetter:
    values: dict[str, object] = {
        "name": name,
        "queue": queue,
        "url": "/_ah/task/m/f",
        "body": b"\x03body",
        "outcome": "failed",
        "attempts": 2,
        "error": "Traceback (most recent call last): ...",
        "headers": {"X-Tenant": "acme"},
        "recorded_at": T0,
    }
    values.update(changes)
    return DeadLetter(**values)  # type: ignore[arg-type]


def test_the_ndb_store_keeps_large_bodies_replaces_lists_and_purges(datastore: Any) -> None:
    from im_task.stores.deadletters_ndb import NdbDeadLetterStore

    store = NdbDeadLetterStore(datastore.client)
    large = bytes(range(256)) * 6000  # 1.5 MB: over Datastore's 1 MiB entity limit, so chunked
    store.record(letter("big", body=large))
    store.record(letter("old", queue="mail", recorded_at=T0 - dt.timedelta(days=1)))
    store.record(letter("new", queue="mail", recorded_at=T0 + dt.timedelta(days=1)))
    assert store.get("default", "big") == letter("big", body=large)
    assert [x.name for x in store.list()] == ["new", "big", "old"]
    assert [x.name for x in store.list("mail")] == ["new", "old"]
    assert [x.name for x in store.list("mail", limit=1)] == ["new"]
    store.record(letter("big", body=b"small now", outcome="gave-up"))  # its old chunks go
    assert store.get("default", "big").body == b"small now"  # type: ignore[union-attr]
    with datastore.client.context():
        assert ndb.Query(kind="_ImTaskDeadLetterChunk").fetch(keys_only=True) == []
    assert store.delete("default", "big") is True
    assert store.delete("default", "big") is False
    assert store.purge("mail") == 2
    assert list(store.list()) == []
    with pytest.raises(ConfigurationError, match="kind"):
        NdbDeadLetterStore(kind="__reserved")


def test_the_endpoint_records_in_datastore_next_to_the_payloads_and_replays_from_there(
    datastore: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from im_task.stores.deadletters_ndb import NdbDeadLetterStore

    store = get_dead_letter_store()
    assert isinstance(store, NdbDeadLetterStore)  # the payload store's kind, with its client
    assert store.client is datastore.client
    dead_tasks.always_fails("bounced")
    datastore.queue.join()
    [kept] = list(store.list())
    assert kept.outcome == "failed"
    assert "PermanentTaskFailure: bounced" in kept.error
    assert describe(kept).function.endswith("always_fails")
    assert main(["dead", "list"]) == 0
    assert kept.name in capsys.readouterr().out
    sink.reset()
    replay(kept)
    datastore.queue.join()
    assert sink.calls == [("always_fails", "bounced")]  # it ran again (and died again: a new letter)
    assert [x.name for x in store.list()] != [kept.name]
    assert len(list(store.list())) == 1
