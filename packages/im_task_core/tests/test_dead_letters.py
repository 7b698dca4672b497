"""Dead letters: the local store, the setting, what the endpoint records, its outcome lines, and ``im-task dead``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport import dead_tasks, sink

from im_task import configure
from im_task.cli import main
from im_task.config import get_keyring
from im_task.dead import DeadLetterError, describe, find_letter, purge, replay, safe_repr
from im_task.deadletter import DeadLetter
from im_task.envelope import Binding, seal
from im_task.errors import ConfigurationError
from im_task.executor import handle_request
from im_task.headers import make_task_headers
from im_task.runtime import check_configuration
from im_task.stores.base import get_payload_store
from im_task.stores.deadletters import DEAD_LETTER_FILE, get_dead_letter_store, make_dead_letter_store
from im_task.stores.deadletters_local import LocalDeadLetterStore
from im_task.testing import ServedQueue
from im_task.testing.plugin import ImTaskSettings
from im_task.transports import RecordingTransport

SECRET = "dead-letters-3f9c2a7b1e8d4c6a9b0e2f5d7c1a3e8b"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def strong_secret(im_task_settings: ImTaskSettings, tmp_path: Path) -> None:
    im_task_settings(secret=SECRET, data_dir=tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> LocalDeadLetterStore:
    found = get_dead_letter_store()
    assert isinstance(found, LocalDeadLetterStore)
    assert found.path == tmp_path / DEAD_LETTER_FILE
    return found


@pytest.fixture
def recorder(im_task_settings: ImTaskSettings) -> RecordingTransport:
    recording = RecordingTransport()
    configure(transport=recording)
    return recording


def letter(name: str = "t1", queue: str = "default", **changes: Any) -> DeadLetter:
    values: dict[str, Any] = {
        "name": name,
        "queue": queue,
        "url": "/_ah/task/m/f",
        "body": b"\x03signed",
        "outcome": "failed",
        "attempts": 1,
        "error": "Traceback...",
    }
    values.update(changes)
    return DeadLetter(**values)


def bound_body(payload: bytes, path: str = "/_ah/task/x/y", queue: str = "default") -> bytes:
    binding = Binding.for_task(path=path, queue=queue, headers={}, lifetime=3600)
    return seal(payload, get_keyring(), binding)


def post(body: bytes, name: str = "task-1", path: str = "/_ah/task/x/y", retry_count: int = 0) -> Any:
    headers = make_task_headers(queue_name="default", task_name=name, retry_count=retry_count)
    headers["Content-Type"] = "application/octet-stream"
    return handle_request("POST", path, body, headers, "127.0.0.1")


# --- the local store -------------------------------------------------------------------------------------------


def test_the_local_store_keeps_replaces_lists_newest_first_and_forgets(store: LocalDeadLetterStore) -> None:
    old = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    store.record(letter("a", recorded_at=old, headers={"X-Tenant": "7"}))
    store.record(letter("b", queue="mail", body=b"\x00" * 300_000, recorded_at=old + dt.timedelta(days=2)))
    store.record(letter("c", recorded_at=old + dt.timedelta(days=1)))
    assert [x.name for x in store.list()] == ["b", "c", "a"]
    assert [x.name for x in store.list("mail")] == ["b"]
    assert len(list(store.list(limit=1))) == 1
    kept = store.get("default", "a")
    assert kept == letter("a", recorded_at=old, headers={"X-Tenant": "7"})
    assert store.get("mail", "b").body == b"\x00" * 300_000  # type: ignore[union-attr]
    store.record(letter("a", outcome="dropped", attempts=4))  # the same task again replaces its letter
    assert (store.get("default", "a").outcome, store.get("default", "a").attempts) == ("dropped", 4)  # type: ignore[union-attr]
    assert store.delete("default", "a") is True
    assert store.delete("default", "a") is False
    assert store.get("default", "a") is None
    assert store.purge("mail") == 1
    assert store.purge() == 1
    assert list(store.list()) == []
    assert store.path.stat().st_mode & 0o777 == 0o600  # task arguments and tracebacks: the owner's only


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"outcome": "ran"}, ValueError),
        ({"attempts": -1}, ValueError),
        ({"attempts": True}, ValueError),
        ({"body": "text"}, TypeError),
        ({"name": ""}, ValueError),
        ({"headers": {"a": 1}}, TypeError),
        ({"recorded_at": dt.datetime(2026, 1, 1)}, ValueError),
    ],
)
def test_a_dead_letter_refuses_bad_values(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        letter(**changes)


def test_the_store_refuses_bad_arguments(store: LocalDeadLetterStore) -> None:
    with pytest.raises(TypeError, match="takes a DeadLetter"):
        store.record({"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        list(store.list(limit=0))
    with pytest.raises(ValueError, match="queue"):
        store.purge("")
    with pytest.raises(ConfigurationError, match="path to a SQLite file"):
        LocalDeadLetterStore(42)  # type: ignore[arg-type]


# --- the setting -----------------------------------------------------------------------------------------------


def test_the_setting_names_the_store_and_defaults_to_the_payload_stores_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from im_task.config import get_settings
    from im_task.stores.deadletters import dead_letter_store_name

    assert dead_letter_store_name(get_settings()) == "local"
    configure(payload_store="ndb")
    assert dead_letter_store_name(get_settings()) == "ndb"
    configure(payload_store=None, dead_letter_store="none")
    assert get_dead_letter_store() is None
    mine = LocalDeadLetterStore(tmp_path / "mine.sqlite3")
    configure(dead_letter_store=mine)
    assert get_dead_letter_store() is mine
    monkeypatch.setenv("IM_TASK_DEAD_LETTER_STORE", "im_task.stores.deadletters_local:LocalDeadLetterStore")
    configure(dead_letter_store=None)
    assert isinstance(get_dead_letter_store(), LocalDeadLetterStore)
    for bad in ("sqlite", 42, LocalDeadLetterStore):
        with pytest.raises(ConfigurationError, match="dead_letter_store must be"):
            configure(dead_letter_store=bad)
    with pytest.raises(ConfigurationError, match="cannot be imported"):
        make_dead_letter_store("nowhere.at_all:Store")
    configure(dead_letter_store="nowhere.at_all:Store")
    with pytest.raises(ConfigurationError, match=r"dead-letter store 'nowhere\.at_all:Store' cannot be imported"):
        check_configuration()  # at start-up, not at the first dead task


# --- what the endpoint records -----------------------------------------------------------------------------------


def test_a_permanent_failure_is_recorded_with_the_body_as_delivered_and_its_traceback(
    recorder: RecordingTransport, store: LocalDeadLetterStore
) -> None:
    dead_tasks.always_fails.using(headers={"X-Tenant": "acme"})("no such user")
    [request] = recorder.requests
    response = recorder.deliver(request, retry_count=2)
    assert (response.status, response.outcome) == (200, "failed")
    [kept] = list(store.list())
    assert kept.body == request.body
    assert (kept.queue, kept.outcome, kept.attempts, kept.url) == ("default", "failed", 3, request.url)
    assert "Traceback" in kept.error
    assert "PermanentTaskFailure: no such user" in kept.error
    assert kept.headers == {"X-Tenant": "acme"}
    about = describe(kept)
    assert about.function.endswith("always_fails")
    assert "'no such user'" in about.arguments


def test_a_task_given_up_at_its_retry_limit_is_recorded_once_and_not_retried_again(
    im_task_local_queue: ServedQueue, store: LocalDeadLetterStore
) -> None:
    dead_tasks.gives_up_after_one_retry()
    im_task_local_queue.join(scheduled=True)
    assert sink.calls == [("gives_up", 0), ("gives_up", 1)]  # no third delivery just to be told it gave up
    [kept] = list(store.list())
    assert (kept.outcome, kept.attempts) == ("gave-up", 2)
    assert "task_retry_limit=1" in kept.error
    assert "RuntimeError: attempt 2 fails" in kept.error


def test_a_dropped_task_is_recorded_and_a_refused_one_never(store: LocalDeadLetterStore) -> None:
    response = post(bound_body(b"not a pickle"), name="undecodable")
    assert response.outcome == "dropped"
    forged = bytearray(bound_body(b"not a pickle"))
    forged[-1] ^= 1
    assert post(bytes(forged), name="forged").outcome == "refused"
    assert [x.name for x in store.list()] == ["undecodable"]
    assert "cannot be decoded" in store.get("default", "undecodable").error  # type: ignore[union-attr]


def test_a_store_that_fails_changes_no_response(caplog: pytest.LogCaptureFixture, recorder: RecordingTransport) -> None:
    class Broken(LocalDeadLetterStore):
        def record(self, letter: DeadLetter) -> None:
            raise OSError("disk full")

    configure(dead_letter_store=Broken(os.devnull))
    dead_tasks.always_fails("boom")
    with caplog.at_level(logging.INFO, logger="im_task"):
        response = recorder.deliver(recorder.requests[0])
    assert (response.status, response.outcome) == (200, "failed")
    [warning] = [r for r in caplog.records if "dead letter" in r.getMessage() and r.levelno == logging.WARNING]
    assert "answered all the same" in warning.getMessage()
    [line] = [r for r in caplog.records if r.name == "im_task.outcomes"]
    assert "kept as a dead letter" not in line.getMessage()


def test_a_large_tasks_payload_is_kept_for_its_dead_letter_and_the_replay_runs_it(
    im_task_local_queue: ServedQueue, store: LocalDeadLetterStore, tmp_path: Path
) -> None:
    marker = tmp_path / "healed"
    dead_tasks.fails_until_healed(str(marker), "x" * 300_000)  # over the inline limit: a stored payload
    im_task_local_queue.join()
    [kept] = list(store.list())
    payloads = get_payload_store()
    assert len(payloads.keys()) == 1  # type: ignore[attr-defined]
    marker.touch()
    new_name = replay(kept)
    im_task_local_queue.join()
    assert sink.calls == [("healed", str(marker))]
    assert new_name
    assert new_name != kept.name
    assert list(store.list()) == []
    assert payloads.keys() == []  # type: ignore[attr-defined]


def test_purge_forgets_the_letters_and_their_stored_payloads(
    im_task_local_queue: ServedQueue, store: LocalDeadLetterStore, tmp_path: Path
) -> None:
    dead_tasks.fails_until_healed(str(tmp_path / "never"), "x" * 300_000)
    im_task_local_queue.join()
    assert purge() == 1
    assert get_payload_store().keys() == []  # type: ignore[attr-defined]


def test_replay_refuses_a_letter_whose_signature_does_not_verify(store: LocalDeadLetterStore) -> None:
    store.record(letter("bad", body=bound_body(b"x")[:-1] + b"?"))
    with pytest.raises(DeadLetterError, match="signature does not verify"):
        replay(find_letter("bad"))
    assert store.get("default", "bad") is not None
    assert "not decoded" in describe(find_letter("bad")).note
    with pytest.raises(DeadLetterError, match="no dead letter of task 'nope'"):
        find_letter("nope")


def test_safe_repr_shortens_and_survives_a_failing_repr() -> None:
    class Nasty:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    text = safe_repr(([Nasty()], "y" * 10_000, list(range(1000))))
    assert len(text) < 700
    assert "Nasty" in text
    assert "..." in text


# --- the outcome lines -----------------------------------------------------------------------------------------


def outcome_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "im_task.outcomes" and r.levelno == logging.INFO]


def test_one_info_line_per_outcome_that_agrees_with_what_happens_next(
    caplog: pytest.LogCaptureFixture, recorder: RecordingTransport, store: LocalDeadLetterStore
) -> None:
    dead_tasks.succeeds(1)
    dead_tasks.always_fails("bad input")
    dead_tasks.gives_up_after_one_retry()
    with caplog.at_level(logging.INFO, logger="im_task.outcomes"):
        ran, failed, retried = (recorder.deliver(request) for request in recorder.requests)
        gave_up = recorder.deliver(recorder.requests[2], retry_count=1)
        dropped = post(bound_body(b"junk"), name="junk")
    assert [r.outcome for r in (ran, failed, retried, gave_up, dropped)] == [
        "ran",
        "failed",
        "retry",
        "gave-up",
        "dropped",
    ]
    lines = outcome_lines(caplog)
    assert len(lines) == 5
    assert " ran on attempt 1 " in lines[0]
    assert "failed permanently on attempt 1" in lines[1]
    assert "it will not be retried; kept as a dead letter" in lines[1]
    assert "answered 500, so the queue retries it" in lines[2]
    assert "RuntimeError: attempt 1 fails" in lines[2]
    assert "was given up on attempt 2" in lines[3]
    assert "will not be retried" in lines[3]
    assert "was dropped on attempt 1" in lines[4]
    retry_logs = [r.getMessage() for r in caplog.records if r.name == "im_task" and "retry" in r.getMessage()]
    assert not any("it will be retried" in line for line in retry_logs)


def test_outcome_lines_are_off_with_the_setting_and_escape_the_request(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = bound_body(b"junk")
    with caplog.at_level(logging.INFO, logger="im_task.outcomes"):
        post(body, name="evil\nINFO forged line")
    [line] = outcome_lines(caplog)
    assert "\n" not in line
    assert "'evil\\nINFO forged line'" in line
    caplog.clear()
    monkeypatch.setenv("IM_TASK_LOG_OUTCOMES", "false")
    configure(log_outcomes=None)
    with caplog.at_level(logging.INFO, logger="im_task.outcomes"):
        post(body, name="quiet")
    assert outcome_lines(caplog) == []
    with pytest.raises(ConfigurationError, match="log_outcomes must be True or False"):
        configure(log_outcomes="maybe")


# --- im-task dead ------------------------------------------------------------------------------------------------


def test_dead_list_show_replay_and_purge(
    im_task_local_queue: ServedQueue, store: LocalDeadLetterStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "healed"
    dead_tasks.fails_until_healed(str(marker), {"user": 7})
    dead_tasks.always_fails("for ever")
    im_task_local_queue.join()
    capsys.readouterr()
    assert main(["dead", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["QUEUE", "NAME", "OUTCOME", "ATTEMPTS", "RECORDED", "URL"]
    assert len(table) == 3
    assert all(" failed " in row for row in table[1:])
    assert main(["dead", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    healing = next(row for row in rows if "fails_until_healed" in row["url"])
    assert main(["dead", "show", healing["name"]]) == 0
    shown = capsys.readouterr().out
    assert "fails_until_healed" in shown
    assert "{'user': 7}" in shown
    assert "PermanentTaskFailure" in shown
    assert "Traceback" in shown
    marker.touch()
    assert main(["dead", "replay", healing["name"], "--queue", "default"]) == 0
    assert "Replayed" in capsys.readouterr().out
    im_task_local_queue.join()
    assert ("healed", str(marker)) in sink.calls
    assert main(["dead", "purge"]) == 2
    assert "refusing to forget 1 dead letter(s) of every queue without --yes" in capsys.readouterr().err
    assert main(["dead", "purge", "--yes"]) == 0
    assert list(store.list()) == []
    assert main(["dead", "show", "gone"]) == 1
    assert "no dead letter of task 'gone'" in capsys.readouterr().err
    assert main(["dead", "replay"]) == 2


def test_dead_list_in_a_real_process_exits_quietly_into_head(tmp_path: Path, store: LocalDeadLetterStore) -> None:
    for number in range(3000):
        store.record(letter(f"task-{number}"))
    environment = {
        **os.environ,
        "IM_TASK_DATA_DIR": str(tmp_path),
        "IM_TASK_SECRET": SECRET,
        "PYTHONPATH": str(ROOT / "tests" / "support"),
    }
    listed = subprocess.run(
        f"{sys.executable} -m im_task dead list --limit 3000 | head -n 2",
        shell=True,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert listed.stdout.splitlines()[0].startswith("QUEUE")
    assert listed.stderr == ""
