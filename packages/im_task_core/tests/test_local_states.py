"""The local queue keeps what became of each task apart, says why a delivery failed, and can show and retry tasks."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport.processes import python_env
from im_task_testsupport.wsgi_apps import Recorder, request

import local_queue_tasks as tasks
from im_task import configure
from im_task.cli import main
from im_task.deadletter import DeadLetter, DeadLetterStore
from im_task.errors import ConfigurationError
from im_task.response import OUTCOME_HEADER
from im_task.retry import RetryPolicy
from im_task.testing import serve_wsgi
from im_task.transports.local import LocalTransport
from im_task.wsgi import TaskWSGIApp

QUICK = RetryPolicy(max_attempts=2, min_backoff=0.01, max_backoff=0.01)


class MemoryDeadLetters:
    """A dead-letter store in memory, implementing the protocol (the real stores are tested elsewhere)."""

    def __init__(self) -> None:
        self.letters: dict[tuple[str, str], DeadLetter] = {}
        self.lock = threading.Lock()

    def record(self, letter: DeadLetter) -> None:
        with self.lock:
            self.letters[letter.queue, letter.name] = letter

    def get(self, queue: str, name: str) -> DeadLetter | None:
        return self.letters.get((queue, name))

    def list(self, queue: str | None = None, *, limit: int | None = None) -> Iterator[DeadLetter]:
        found = [letter for letter in self.letters.values() if queue in (None, letter.queue)]
        return iter(found[:limit])

    def delete(self, queue: str, name: str) -> bool:
        return self.letters.pop((queue, name), None) is not None

    def purge(self, queue: str | None = None) -> int:
        gone = [key for key in self.letters if queue in (None, key[0])]
        for key in gone:
            del self.letters[key]
        return len(gone)


class Answers:
    """A WSGI app answering each task by name: a status, an outcome header and a body."""

    def __init__(self, answers: dict[str, tuple[int, str | None, bytes]]) -> None:
        self.answers = answers

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status, outcome, body = self.answers[environ["HTTP_X_APPENGINE_TASKNAME"]]
        headers = [("Content-Type", "text/plain")] + ([(OUTCOME_HEADER, outcome)] if outcome else [])
        start_response(f"{status} Whatever", headers)
        return [body]


ANSWERS = {
    "ran": (200, "ran", b"OK\n"),
    "plain": (200, None, b"OK\n"),
    "failed": (200, "failed", b"Task failed permanently: ValueError: bad address\n"),
    "gave-up": (200, "gave-up", b"Task gave up after 3 attempts\n"),
    "dropped": (200, "dropped", b"Task dropped: its payload cannot be decoded\n"),
}


@pytest.mark.parametrize("over_http", [False, True])
def test_a_200_keeps_done_failed_gave_up_and_dropped_apart(db: Path, over_http: bool) -> None:
    app = Answers(ANSWERS)
    dead = MemoryDeadLetters()

    def run(target: Any) -> None:
        with LocalTransport(db, target=target, dead_letters=dead) as transport:
            for name in ANSWERS:
                transport.enqueue(request(name))
            assert transport.join(10)
            states = {t.name: (t.state, t.outcome) for t in transport.tasks()}
            stats = transport.stats()
        assert states == {
            "ran": ("done", "ran"),
            "plain": ("done", None),
            "failed": ("failed", "failed"),
            "gave-up": ("gave-up", "gave-up"),
            "dropped": ("dropped", "dropped"),
        }
        assert (stats.done, stats.failed, stats.gave_up, stats.dropped) == (2, 1, 1, 1)
        assert (stats.delivered, stats.given_up, stats.retried) == (2, 3, 0)

    if over_http:
        with serve_wsgi(app) as url:
            run(url)
    else:
        run(app)
    assert dead.letters == {}  # the endpoint answered those itself and recorded their dead letters
    with LocalTransport(db, autostart=False) as transport:
        [failed] = transport.task("failed")
    assert failed.error_detail is not None
    assert "bad address" in failed.error_detail
    assert failed.body == b"payload"  # kept, so that it can be retried


def test_the_queue_giving_up_records_a_dead_letter_with_the_last_error(db: Path) -> None:
    dead = MemoryDeadLetters()
    app = Recorder(statuses=[503, 503])
    with LocalTransport(db, target=app, default_policy=QUICK, dead_letters=dead) as transport:
        transport.enqueue(request("doomed", headers={"Content-Type": "application/octet-stream", "X-Mine": "1"}))
        assert transport.join(10, scheduled=True)
        [task] = transport.tasks()
    assert (task.state, task.attempts, task.last_status) == ("gave-up", 2, 503)
    letter = dead.letters["default", "doomed"]
    assert (letter.outcome, letter.attempts, letter.url, letter.body) == ("gave-up", 2, "/_ah/task/mod/fn", b"payload")
    assert letter.headers["X-Mine"] == "1"
    assert "HTTP 503" in letter.error
    assert "answer" in letter.error


def test_dead_letters_must_be_a_store(db: Path) -> None:
    with pytest.raises(ConfigurationError, match="dead_letters must be a DeadLetterStore"):
        LocalTransport(db, dead_letters=object())  # type: ignore[arg-type]
    assert isinstance(MemoryDeadLetters(), DeadLetterStore)


def test_an_exception_in_process_keeps_its_traceback(db: Path) -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise KeyError("the missing key")

    with LocalTransport(db, target=broken, default_policy=RetryPolicy(max_attempts=1)) as transport:
        transport.enqueue(request("raiser"))
        assert transport.join(10)
        [detail] = transport.task("raiser")
    assert detail.info.state == "gave-up"
    assert detail.info.last_error == "UNHANDLED_EXCEPTION: KeyError"
    assert detail.error_detail is not None
    assert "Traceback (most recent call last)" in detail.error_detail
    assert "the missing key" in detail.error_detail


@pytest.mark.parametrize(
    ("status", "hint"),
    [(404, "the task route is mounted"), (403, "same secret"), (400, "ALLOWED_HOSTS")],
)
def test_a_refused_delivery_is_a_warning_with_a_hint(
    db: Path, status: int, hint: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Recorder(statuses=[status])
    with caplog.at_level(logging.INFO, logger="im_task.local"), LocalTransport(db, target=app) as transport:
        transport.enqueue(request("refused"))
        assert transport.join(10, scheduled=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert hint in warnings[0]
    assert f"HTTP {status}" in warnings[0]
    assert "Retry 1 in" in warnings[0]
    assert len(app.calls) == 2  # and it was retried, as the line said


def test_retry_queues_finished_tasks_again(db: Path) -> None:
    app = Answers({**ANSWERS, "later": (503, None, b"down\n")})
    with LocalTransport(db, target=app, default_policy=RetryPolicy(max_attempts=1)) as transport:
        for name in ("ran", "failed", "dropped", "later"):
            transport.enqueue(request(name))
        assert transport.join(10)
        assert transport.retry("ran") == 0  # a done task keeps no body
        with pytest.raises(ConfigurationError, match="a done task keeps no body"):
            transport.retry(states=("done",))
        app.answers.update(failed=ANSWERS["ran"], dropped=ANSWERS["ran"], later=ANSWERS["ran"])
        assert transport.retry("later") == 1
        assert transport.retry(states=("failed",)) == 1
        assert transport.join(10)
        states = {t.name: (t.state, t.attempts) for t in transport.tasks()}
    assert states == {"ran": ("done", 1), "failed": ("done", 1), "later": ("done", 1), "dropped": ("dropped", 1)}


def test_an_app_that_fails_a_task_for_good_ends_it_failed_end_to_end(db: Path) -> None:
    transport = LocalTransport(db, target=TaskWSGIApp())
    configure(transport=transport)
    try:
        handle = tasks.refuse_for_good("no such user")
        assert transport.join(10)
        [detail] = transport.task(handle.name or "")
    finally:
        transport.close()
    assert (detail.info.state, detail.info.outcome, detail.info.attempts) == ("failed", "failed", 1)
    assert detail.error_detail is not None
    assert "no such user" in detail.error_detail
    assert "Traceback (most recent call last)" in detail.error_detail  # the one the endpoint logged, in process


def test_queue_show_prints_the_call_attempts_and_last_error(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transport = LocalTransport(db, target=TaskWSGIApp())
    configure(transport=transport)
    try:
        handle = tasks.crash_once_and_give_up("x" * 500)
        assert transport.join(10)
    finally:
        transport.close()
    name = handle.name or ""
    assert main(["queue", "show", name, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"name:        {name}" in out
    assert "state:       gave-up (since " in out
    [function] = [line for line in out.splitlines() if line.startswith("function:")]
    assert "crash_once_and_give_up" in function
    assert "arguments:   ('xxxx" in out
    assert "x" * 500 not in out
    assert "attempts:    1" in out
    assert "outcome:     gave-up" in out
    assert "last error:" in out
    assert main(["queue", "show", "nothing-of-that-name", "--db", str(db)]) == 1
    assert "no task named 'nothing-of-that-name'" in capsys.readouterr().err


def test_queue_show_does_not_decode_a_body_whose_signature_fails(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with LocalTransport(db, autostart=False) as transport:
        transport.enqueue(request("forged", body=b"\x03not a signed envelope"))
    assert main(["queue", "show", "forged", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "function:    (not decoded" in out
    assert "state:       queued (due now)" in out


def test_queue_retry_and_stats_commands(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = Answers(ANSWERS)
    with LocalTransport(db, target=app) as transport:
        for name in ANSWERS:
            transport.enqueue(request(name))
        assert transport.join(10)
    assert main(["queue", "stats", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == (
        "all queues: queued 0 (due now 0), running 0, done 2, failed 1, gave-up 1, dropped 1"
    )
    assert main(["queue", "stats", "--db", str(db), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert (counts["done"], counts["failed"], counts["gave-up"], counts["dropped"]) == (2, 1, 1, 1)
    assert main(["queue", "list", "--db", str(db), "--state", "dropped"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == ["default", "dropped", "dropped"]
    assert main(["queue", "retry", "--db", str(db)]) == 2
    assert "give the task's NAME, or --state" in capsys.readouterr().err
    assert main(["queue", "retry", "ran", "--db", str(db)]) == 1
    assert "cannot be retried" in capsys.readouterr().err
    assert main(["queue", "retry", "failed", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == "Queued 1 task(s) again."
    assert main(["queue", "retry", "--state", "gave-up", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == "Queued 1 task(s) again."
    with LocalTransport(db, autostart=False) as transport:
        stats = transport.stats()
    assert (stats.queued, stats.failed, stats.gave_up, stats.dropped) == (2, 0, 0, 1)


def test_queue_list_into_head_exits_quietly(db: Path) -> None:
    with LocalTransport(db, autostart=False) as transport:
        transport.enqueue_many([request(f"task-{i:05d}") for i in range(3000)])
    pipeline = subprocess.run(
        f"{sys.executable} -m im_task.cli queue list --db {db} --limit 3000 | head -n 2",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=python_env(),
        check=False,
    )
    assert pipeline.returncode == 0
    assert len(pipeline.stdout.splitlines()) == 2
    assert pipeline.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored"


def test_a_file_of_the_previous_schema_is_upgraded_in_place(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, name TEXT NOT NULL, url TEXT NOT NULL,
            headers TEXT NOT NULL, body BLOB NOT NULL, eta REAL NOT NULL, due REAL NOT NULL, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, executions INTEGER NOT NULL DEFAULT 0, first_attempt REAL,
            last_status INTEGER, last_error TEXT, deadline REAL, retry_options TEXT, lease_owner TEXT,
            lease_until REAL, created REAL NOT NULL, finished REAL, UNIQUE (queue, name)
        );
        INSERT INTO tasks (queue, name, url, headers, body, eta, due, state, created)
            VALUES ('default', 'old', '/_ah/task/mod/fn', '{}', X'00', 0, 0, 'queued', 0);
        PRAGMA user_version = 1;
        """
    )
    conn.close()
    app = Recorder()
    with LocalTransport(db, target=app) as transport:
        assert transport.join(10)
        assert [(t.name, t.state) for t in transport.tasks()] == [("old", "done")]
    assert app.names() == ["old"]
