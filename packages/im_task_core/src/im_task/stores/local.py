"""``LocalPayloadStore``: payloads in a SQLite file, next to the local queue."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from im_task.datadir import make_data_dir, make_file_dir, make_private_file
from im_task.errors import ConfigurationError
from im_task.stores.base import DEFAULT_ORPHAN_TTL

__all__ = ["LocalPayloadStore"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS payloads (key TEXT PRIMARY KEY, data BLOB NOT NULL, created REAL NOT NULL)"


class LocalPayloadStore:
    """A payload store in a SQLite file: the default off Google Cloud, so large tasks work in development too.

    Each call opens its own connection, so the store is safe from several
    threads and processes (``im-task worker``) at once. A payload is
    committed before :meth:`put` returns; the store joins no transaction of
    the application (a rolled-back transactional task leaves its payload
    until :meth:`sweep`).

    Args:
        path: The SQLite file, made ``0600`` (a missing directory is made ``0700`` with a ``.gitignore``, see
            :mod:`im_task.datadir`); ``payloads.sqlite3`` in the configured ``data_dir`` when None.

    Raises:
        ConfigurationError: ``path`` is not a path.

    Example:
        >>> store = LocalPayloadStore("/tmp/payloads.sqlite3")  # doctest: +SKIP
        >>> key = store.put(b"x" * 200_000)  # doctest: +SKIP
        >>> len(store.get(key))  # doctest: +SKIP
        200000
    """

    name = "local"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._in_data_dir = path is None  # the data directory is adopted (0700, .gitignore) even if it exists
        if path is None:
            from im_task.config import get_settings
            from im_task.stores.base import PAYLOAD_FILE

            path = get_settings().local_data_dir() / PAYLOAD_FILE
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigurationError(f"LocalPayloadStore takes a path to a SQLite file, not {type(path).__name__}.")
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()

    def _prepare(self) -> None:
        """Makes the file's directory (a data directory: 0700, with a .gitignore) and the file itself, 0600."""
        if self._in_data_dir:
            make_data_dir(self.path.parent)
        else:
            make_file_dir(self.path)
        make_private_file(self.path)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        if not self._ready:
            try:
                with self._lock:
                    if not self._ready:
                        connection.execute("PRAGMA journal_mode=WAL")
                        connection.execute(_SCHEMA)
                        self._ready = True
            except BaseException:
                connection.close()  # a failed set-up must not leak the connection
                raise
        return connection

    def _run(self, sql: str, parameters: tuple[object, ...]) -> sqlite3.Cursor:
        self._prepare()
        connection = self._connect()
        try:
            return connection.execute(sql, parameters)
        finally:
            connection.close()

    def put(self, payload: bytes, *, in_transaction: bool = True) -> str:
        """Stores a payload (committed at once: this store joins no transaction) and returns its new key.

        Raises:
            TypeError: ``payload`` is not bytes.
        """
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"put() takes bytes, not {type(payload).__name__}.")
        key = uuid.uuid4().hex
        self._run("INSERT INTO payloads (key, data, created) VALUES (?, ?, ?)", (key, bytes(payload), time.time()))
        return key

    def get(self, key: str) -> bytes | None:
        """The payload stored under ``key``, or None."""
        self._prepare()
        connection = self._connect()
        try:
            row = connection.execute("SELECT data FROM payloads WHERE key = ?", (key,)).fetchone()
        finally:
            connection.close()
        return None if row is None else bytes(row[0])

    def delete(self, key: str) -> None:
        """Deletes a payload; a key already gone is fine."""
        self._run("DELETE FROM payloads WHERE key = ?", (key,))

    def sweep(self, older_than: float = DEFAULT_ORPHAN_TTL) -> int:
        """Deletes payloads stored at least ``older_than`` seconds ago; returns how many.

        Raises:
            ConfigurationError: ``older_than`` is not a number >= 0.
        """
        if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or not older_than >= 0:
            raise ConfigurationError(f"older_than must be a number of seconds >= 0, not {older_than!r}.")
        return int(self._run("DELETE FROM payloads WHERE created <= ?", (time.time() - older_than,)).rowcount)

    def keys(self) -> list[str]:
        """The keys stored now (for tests and inspection)."""
        self._prepare()
        connection = self._connect()
        try:
            return [str(row[0]) for row in connection.execute("SELECT key FROM payloads ORDER BY created")]
        finally:
            connection.close()

    def __repr__(self) -> str:
        return f"LocalPayloadStore({str(self.path)!r})"
