"""The local queue's file: generated names kept as ids, never given twice, and files of the previous schema upgraded."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest
from im_task_testsupport.wsgi_apps import Recorder

from im_task.errors import EnqueueError, TaskAlreadyExistsError
from im_task.transports import TaskRequest
from im_task.transports.local import LocalTransport


def _request(name: str | None = None, queue: str = "default") -> TaskRequest:
    return TaskRequest(queue=queue, url="/_ah/task/m/f", body=b"body", name=name)


def _schema_2_file(db: Path) -> None:
    """A queue file as the previous im-task made it: AUTOINCREMENT ids and every name in a unique index."""
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, name TEXT NOT NULL, url TEXT NOT NULL,
            headers TEXT NOT NULL, body BLOB NOT NULL, eta REAL NOT NULL, due REAL NOT NULL, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, executions INTEGER NOT NULL DEFAULT 0, first_attempt REAL,
            last_status INTEGER, last_error TEXT, deadline REAL, retry_options TEXT, lease_owner TEXT,
            lease_until REAL, created REAL NOT NULL, finished REAL, outcome TEXT, error_detail TEXT,
            UNIQUE (queue, name)
        );
        CREATE INDEX tasks_state_due ON tasks (state, due);
        PRAGMA user_version = 2;
        """
    )
    now = time.time()
    rows = [
        ("waiting", "queued", None, b"one"),
        ("0123456789abcdef0123456789abcdef", "done", now - 10, b""),  # a generated name of the old form
        ("newest", "queued", None, b"three"),
    ]
    for name, state, finished, body in rows:
        conn.execute(
            "INSERT INTO tasks (queue, name, url, headers, body, eta, due, state, created, finished) "
            "VALUES ('default', ?, '/_ah/task/m/f', '{\"X-Kept\":\"yes\"}', ?, ?, ?, ?, ?, ?)",
            (name, body, now, now, state, now, finished),
        )
    conn.execute("DELETE FROM tasks WHERE name = 'newest'")  # its id, 3, was given: AUTOINCREMENT never reuses it
    conn.commit()
    conn.close()


def test_a_file_of_schema_2_keeps_its_tasks_names_and_ids(db: Path) -> None:
    _schema_2_file(db)
    app = Recorder()
    with LocalTransport(db, target=app, autostart=False) as queue:
        infos = {t.name: t for t in queue.tasks()}
        assert set(infos) == {"waiting", "0123456789abcdef0123456789abcdef"}
        assert infos["waiting"].state == "queued"
        assert infos["waiting"].size == 3
        [detail] = queue.task("waiting")
        assert detail.body == b"one"
        assert detail.headers == {"X-Kept": "yes"}
        with pytest.raises(TaskAlreadyExistsError):  # the old names still deduplicate, done ones included
            queue.enqueue(_request("0123456789abcdef0123456789abcdef"))
        with pytest.raises(TaskAlreadyExistsError):
            queue.enqueue(_request("waiting"))
        name = queue.enqueue(_request())
        assert int(name[16:], 16) == 4  # above every id the old file gave, the deleted newest one included
        queue.start()
        assert queue.join(10)
    assert sorted(app.names()) == sorted(["waiting", name])
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (3,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


def test_a_file_of_schema_2_is_upgraded_once_by_two_transports(db: Path) -> None:
    _schema_2_file(db)
    with LocalTransport(db, autostart=False) as first, LocalTransport(db, autostart=False) as second:
        assert {t.name for t in first.tasks()} == {t.name for t in second.tasks()}
        name = first.enqueue(_request())
        assert [detail.info.name for detail in second.task(name)] == [name]


def test_generated_names_are_32_hex_digits_and_never_given_twice(db: Path) -> None:
    with LocalTransport(db, autostart=False) as queue:
        first = queue.enqueue(_request())
        second = queue.enqueue(_request())
        assert re.fullmatch(r"[0-9a-f]{32}", first)
        assert re.fullmatch(r"[0-9a-f]{32}", second)
        assert first[:16] == second[:16]
        assert first != second
        assert queue.purge() == 2  # the newest task (the largest id) is gone too...
        third = queue.enqueue(_request())
        assert third not in (first, second)  # ...yet its id, hence its name, is not given again
        assert queue.purge() == 1
    with LocalTransport(db, autostart=False) as reopened:
        assert reopened.enqueue(_request()) not in (first, second, third)
    with LocalTransport(db.with_name("other.sqlite3"), autostart=False) as other:
        assert other.enqueue(_request())[:16] != first[:16]  # another file, another prefix


def test_a_generated_name_deduplicates_like_a_given_one(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app, autostart=False, name_retention=3600) as queue:
        name = queue.enqueue(_request())
        with pytest.raises(TaskAlreadyExistsError, match="is queued"):
            queue.enqueue(_request(name))
        assert queue.enqueue(_request(name, queue="other")) == name  # names are unique per queue
        [detail] = queue.task(name, queue="default")
        assert detail.info.name == name
        assert detail.body == b"body"
        assert {d.info.queue for d in queue.task(name)} == {"default", "other"}
        queue.start()
        assert queue.join(10)
        with pytest.raises(TaskAlreadyExistsError, match="finished"):  # its tombstone holds it
            queue.enqueue(_request(name))
    assert sorted(app.names()) == [name, name]
    with LocalTransport(db, autostart=False, name_retention=0) as forgetful:
        assert forgetful.enqueue(_request(name)) == name  # remembered no more: the name may be reused
        assert [(t.name, t.state) for t in forgetful.tasks(queue="default")] == [(name, "queued")]


def test_a_name_of_the_generated_form_for_a_task_to_come_is_refused(db: Path) -> None:
    with LocalTransport(db, autostart=False) as queue:
        name = queue.enqueue(_request())
        future = f"{name[:16]}{int(name[16:], 16) + 1:016x}"
        with pytest.raises(EnqueueError, match="give the task another name"):
            queue.enqueue(_request(future))
        [result] = queue.enqueue_many([_request(future)])
        assert isinstance(result, EnqueueError)
        assert queue.enqueue(_request()) == future  # the name went to the task it was for
        assert queue.enqueue(_request(future.upper())) == future.upper()  # not of the generated form: a name
