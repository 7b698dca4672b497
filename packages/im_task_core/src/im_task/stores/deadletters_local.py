"""``LocalDeadLetterStore``: dead letters in a SQLite file, next to the local queue and the payloads."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from im_task.datadir import make_data_dir, make_file_dir, make_private_file
from im_task.deadletter import DeadLetter, check_letter, check_queue_filter
from im_task.errors import ConfigurationError

__all__ = ["LocalDeadLetterStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    outcome TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    headers TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (queue, name)
);
CREATE INDEX IF NOT EXISTS dead_letters_by_time ON dead_letters (recorded_at);
"""
_COLUMNS = "queue, name, url, body, outcome, attempts, error, headers, recorded_at"


class LocalDeadLetterStore:
    """A dead-letter store in a SQLite file: the default off Google Cloud.

    Each call opens its own connection, so the store is safe from several
    threads and processes (the app, ``im-task worker``, ``im-task dead``) at once.

    Args:
        path: The SQLite file, made ``0600`` (dead letters hold task arguments and tracebacks; a missing
            directory is made ``0700``, see :mod:`im_task.datadir`); ``deadletters.sqlite3`` in the configured
            ``data_dir`` when None.

    Raises:
        ConfigurationError: ``path`` is not a path.

    Example:
        >>> store = LocalDeadLetterStore("/tmp/deadletters.sqlite3")  # doctest: +SKIP
        >>> [letter.name for letter in store.list("emails")]  # doctest: +SKIP
        ['task-1']
    """

    name = "local"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._in_data_dir = path is None  # the data directory is adopted (0700, .gitignore) even if it exists
        if path is None:
            from im_task.config import get_settings
            from im_task.stores.deadletters import DEAD_LETTER_FILE

            path = get_settings().local_data_dir() / DEAD_LETTER_FILE
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigurationError(f"LocalDeadLetterStore takes a path to a SQLite file, not {type(path).__name__}.")
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            if self._in_data_dir:
                make_data_dir(self.path.parent)
            else:
                make_file_dir(self.path)
            make_private_file(self.path)
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            if not self._ready:
                with self._lock:
                    if not self._ready:
                        connection.execute("PRAGMA journal_mode=WAL")
                        connection.executescript(_SCHEMA)
                        self._ready = True
        except BaseException:
            connection.close()  # a failed set-up must not leak the connection
            raise
        return connection

    def _execute(self, sql: str, parameters: tuple[object, ...] = ()) -> list[Any]:
        connection = self._connect()
        try:
            return connection.execute(sql, parameters).fetchall()
        finally:
            connection.close()

    def record(self, letter: DeadLetter) -> None:
        """Keeps a dead letter; a second letter of the same queue and name replaces the first.

        Raises:
            TypeError: ``letter`` is not a well-formed :class:`~im_task.deadletter.DeadLetter`.
        """
        check_letter(letter)
        self._execute(
            f"INSERT OR REPLACE INTO dead_letters ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                letter.queue,
                letter.name,
                letter.url,
                bytes(letter.body),
                letter.outcome,
                letter.attempts,
                letter.error,
                json.dumps(dict(letter.headers)),
                letter.recorded_at.timestamp(),
            ),
        )

    def get(self, queue: str, name: str) -> DeadLetter | None:
        """The dead letter of that task, or None."""
        rows = self._execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE queue = ? AND name = ?", (queue, name))
        return _letter(rows[0]) if rows else None

    def list(self, queue: str | None = None, *, limit: int | None = None) -> Iterator[DeadLetter]:
        """Dead letters, newest first, of one queue or of all.

        Raises:
            ValueError: ``limit`` is not None nor a whole number >= 1, or ``queue`` is not a string.
        """
        check_queue_filter(queue, limit)
        sql = f"SELECT {_COLUMNS} FROM dead_letters"
        parameters: tuple[object, ...] = ()
        if queue is not None:
            sql, parameters = sql + " WHERE queue = ?", (queue,)
        sql += " ORDER BY recorded_at DESC, name"
        if limit is not None:
            sql, parameters = sql + " LIMIT ?", (*parameters, limit)
        return iter([_letter(row) for row in self._execute(sql, parameters)])

    def delete(self, queue: str, name: str) -> bool:
        """Forgets one dead letter; whether there was one."""
        connection = self._connect()
        try:
            return (
                connection.execute("DELETE FROM dead_letters WHERE queue = ? AND name = ?", (queue, name)).rowcount > 0
            )
        finally:
            connection.close()

    def purge(self, queue: str | None = None) -> int:
        """Forgets every dead letter of one queue or of all; how many there were.

        Raises:
            ValueError: ``queue`` is not None nor a string.
        """
        check_queue_filter(queue, None)
        connection = self._connect()
        try:
            if queue is None:
                return int(connection.execute("DELETE FROM dead_letters").rowcount)
            return int(connection.execute("DELETE FROM dead_letters WHERE queue = ?", (queue,)).rowcount)
        finally:
            connection.close()

    def __repr__(self) -> str:
        return f"LocalDeadLetterStore({str(self.path)!r})"


def _letter(row: Any) -> DeadLetter:
    queue, name, url, body, outcome, attempts, error, headers, recorded_at = row
    return DeadLetter(
        name=str(name),
        queue=str(queue),
        url=str(url),
        body=bytes(body),
        outcome=str(outcome),
        attempts=int(attempts),
        error=str(error),
        headers={str(k): str(v) for k, v in json.loads(str(headers)).items()},
        recorded_at=dt.datetime.fromtimestamp(float(recorded_at), dt.timezone.utc),
    )
