"""The SQLite task store of the local queue.

One table holds every task. Writers take SQLite's write lock up front
(``BEGIN IMMEDIATE``), so several threads, dispatchers and processes may share
one file: a dispatcher *claims* due tasks by giving them a lease (an owner and
an expiry time); a lease that runs out because its holder died makes the task
claimable again. The database runs in WAL mode with ``synchronous=NORMAL``:
a committed enqueue survives a crash of the process, and readers never block
the writer.

Every statement runs under the store's lock, and ``fork()`` takes the locks of
every open store first: SQLite's lock bookkeeping is process-wide and copied by
``fork()``, so a child forked in the middle of a transaction could never write
to the file again. A child opens its own connection on first use.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import secrets
import sqlite3
import threading
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

from im_task.datadir import make_file_dir, make_private_file
from im_task.errors import EnqueueError
from im_task.retry import RetryOptions
from im_task.transports.base import name_taken
from im_task.transports.local.models import FINISHED_STATES, STATES, QueueStats, TaskDetail, TaskInfo, TaskState

__all__ = [
    "LEASE_EXPIRED",
    "ClaimedTask",
    "LostAttempt",
    "NewTask",
    "Settlement",
    "TaskStore",
    "corruption_message",
    "is_corrupt",
    "is_disk_full",
    "write_failure",
]

SCHEMA_VERSION = 3
#: The tasks. A task enqueued without a name has none stored (``name`` is NULL): its name is made of the file's
#: name prefix and its id (see :meth:`TaskStore.generated_name`), so that the unique name index holds the names
#: given by callers only, and committing an unnamed task writes two pages (the row and the due index), not three.
_TASKS = """
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    name TEXT,
    url TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    eta REAL NOT NULL,
    due REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    executions INTEGER NOT NULL DEFAULT 0,
    first_attempt REAL,
    last_status INTEGER,
    last_error TEXT,
    deadline REAL,
    retry_options TEXT,
    lease_owner TEXT,
    lease_until REAL,
    created REAL NOT NULL,
    finished REAL,
    outcome TEXT,
    error_detail TEXT
)"""
_COLUMNS = (
    "id, queue, name, url, headers, body, eta, due, state, attempts, executions, first_attempt, last_status, "
    "last_error, deadline, retry_options, lease_owner, lease_until, created, finished, outcome, error_detail"
)
#: What the file knows of itself: the prefix of its generated names, and the id floor (ids at or below it
#: were given, and may have been deleted since: they are never given again).
_FILE_KEYS = "CREATE TABLE queue_file (key TEXT PRIMARY KEY, value NOT NULL)"
_INDEXES = (
    "CREATE INDEX tasks_state_due ON tasks (state, due)",
    "CREATE UNIQUE INDEX tasks_queue_name ON tasks (queue, name) WHERE name IS NOT NULL",
)
_FILE_ROWS = "INSERT INTO queue_file (key, value) VALUES ('name_prefix', ?), ('id_floor', ?)"
_SCHEMA = (_TASKS, *_INDEXES, _FILE_KEYS)
#: What a file of an older schema needs, by the version it has (version 2 to 3 rebuilds the table, see _upgrade).
_MIGRATIONS = {1: ("ALTER TABLE tasks ADD COLUMN outcome TEXT", "ALTER TABLE tasks ADD COLUMN error_detail TEXT")}
_PREFIX_DIGITS = 16  # hex digits of a file's name prefix; a generated name is these and 16 of its id
_DETAIL_LIMIT = 16384  # characters of the last error kept per task
_VACUUM_FREE_SHARE = 0.5  # vacuum when at least this share of the file is free pages...
_VACUUM_MIN_BYTES = 4 * 1024 * 1024  # ...and at least this many bytes are free
_SQLITE_CORRUPT = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
_SQLITE_FULL = 13
_SQLITE_IOERR = 10
_LOW_SPACE = 1024 * 1024  # bytes free below which a failed write is blamed on a full disk
_ACTIVE = ("queued", "running")
# The id is SQLite's (the largest plus one) unless the largest was deleted: then the floor's next, so that an id,
# hence a generated name, is never given twice (what AUTOINCREMENT does, without writing a page per insert).
_INSERT = (
    "INSERT INTO tasks (id, queue, name, url, headers, body, eta, due, state, deadline, retry_options, created) "
    "VALUES ((SELECT value + 1 FROM queue_file WHERE key = 'id_floor' "
    "AND value >= (SELECT IFNULL(MAX(id), 0) FROM tasks)), ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)"
)
# Before a DELETE: raises the floor to the largest id, which the DELETE may remove.
_KEEP_IDS = "UPDATE queue_file SET value = MAX(value, (SELECT IFNULL(MAX(id), 0) FROM tasks)) WHERE key = 'id_floor'"


def _row(task: NewTask, now: float, headers: str) -> tuple[object, ...]:
    """The values of :data:`_INSERT` for a task, given its headers' JSON."""
    options = task.retry_options
    return (
        task.queue,
        task.name,
        task.url,
        headers,
        task.body,
        task.eta,
        task.eta,
        task.deadline,
        None if options is None else _dump_options(options),
        now,
    )


_RELEASE = (  # a claimed task given back unattempted
    "UPDATE tasks SET state = 'queued', attempts = attempts - 1, "
    "first_attempt = CASE WHEN attempts = 1 THEN NULL ELSE first_attempt END, "
    "lease_owner = NULL, lease_until = NULL "
    "WHERE id = ? AND state = 'running' AND lease_owner = ? AND attempts = ?"
)
_SETTLE = (  # the outcome of an attempt; a done task keeps no body
    "UPDATE tasks SET state = ?, due = CASE WHEN ? = 'queued' THEN ? ELSE due END, "
    "last_status = ?, last_error = ?, executions = executions + ?, "
    "finished = CASE WHEN ? = 'queued' THEN NULL ELSE ? END, "
    "body = CASE WHEN ? THEN X'' ELSE body END, lease_owner = NULL, lease_until = NULL, "
    "outcome = ?, error_detail = CASE WHEN ? THEN NULL ELSE COALESCE(?, error_detail) END "
    "WHERE id = ? AND state = 'running' AND lease_owner = ? AND attempts = ?"
)

#: Retry reason of an attempt whose dispatcher lost its lease (it died, or stalled, mid-delivery).
LEASE_EXPIRED = "LEASE_EXPIRED"
_REAP_BATCH = 100  # expired leases settled per claim; more wait for the next one
_CLAIM_COLUMNS = (
    "id, queue, name, url, headers, body, eta, attempts, executions, first_attempt, "
    "last_status, last_error, deadline, retry_options"
)
_ORDER_STATES = "CASE state WHEN 'running' THEN 0 WHEN 'queued' THEN 1 WHEN 'done' THEN 3 ELSE 2 END"
_stores: weakref.WeakSet[TaskStore] = weakref.WeakSet()
_stores_lock = threading.Lock()  # guards _stores, so that fork() sees every store
_held_across_fork: list[TaskStore] = []
_abandoned: list[sqlite3.Connection] = []  # connections inherited through fork(): never used nor closed


class NewTask(NamedTuple):
    """A task to insert: everything the store keeps of a ``TaskRequest`` (a named tuple: made on every enqueue).

    Attributes:
        queue: Short queue name.
        name: Task name, unique in its queue, or None for one generated from its id.
        url: Path to POST to.
        headers: The request's own headers.
        body: The body to POST.
        eta: When to run it, seconds since the epoch.
        deadline: Seconds to wait for an answer, or None for the queue's default.
        retry_options: The task's own retry options, or None.
    """

    queue: str
    name: str | None
    url: str
    headers: dict[str, str]
    body: bytes
    eta: float
    deadline: float | None
    retry_options: RetryOptions | None


class ClaimedTask(NamedTuple):
    """A task leased to a dispatcher, with what it needs to deliver it (a named tuple: made per claimed task).

    The ``headers`` of tasks claimed together may be one dict shared by them: read it, never change it.

    Attributes:
        id: Row id.
        queue: Short queue name.
        name: Task name.
        url: Path to POST to.
        headers: The request's own headers.
        body: The body to POST.
        eta: When the task was scheduled, seconds since the epoch.
        attempt: Number of this attempt, 1 for the first.
        executions: Earlier attempts that got a response other than 5xx.
        first_attempt: When the first attempt started, seconds since the epoch.
        previous_status: HTTP status of the previous attempt, if there was one and it was answered.
        previous_error: Why the previous attempt failed, if it did.
        deadline: The task's own dispatch deadline in seconds, or None.
        retry_options: The task's own retry options, or None.
    """

    id: int
    queue: str
    name: str
    url: str
    headers: dict[str, str]
    body: bytes
    eta: float
    attempt: int
    executions: int
    first_attempt: float
    previous_status: int | None
    previous_error: str | None
    deadline: float | None
    retry_options: RetryOptions | None


@dataclass(frozen=True)
class LostAttempt:
    """A running task whose lease ran out: its dispatcher died (or stalled) mid-delivery.

    The attempt counts as failed with the reason :data:`LEASE_EXPIRED`, and is
    settled like any failed attempt: retried after a backoff, or given up on.

    Attributes:
        id: Row id.
        queue: Short queue name.
        name: Task name.
        url: Path the task is POSTed to.
        attempt: Number of the lost attempt, 1 for the first.
        first_attempt: When the first attempt started, seconds since the epoch.
        retry_options: The task's own retry options, or None.
        found: When the lease was found run out (the time of the claim), seconds since the epoch.
    """

    id: int
    queue: str
    name: str
    url: str
    attempt: int
    first_attempt: float
    retry_options: RetryOptions | None
    found: float


#: Decides the fate of a lost attempt: when to retry it (seconds since the epoch), or None to give up.
LostAttemptPolicy = Callable[[LostAttempt], float | None]


class Settlement(NamedTuple):
    """The outcome of one attempt, to record (a named tuple: made per attempt).

    Attributes:
        id: Row id of the task.
        attempt: The attempt settled; ignored if the task was claimed again since.
        state: ``"done"``, ``"failed"`` or ``"queued"`` (to retry).
        due: When a task to retry is due again.
        status: HTTP status received, or None.
        error: Why the attempt failed, or None.
        executed: Whether the attempt counts as an execution (any non-5xx answer).
        finished: When the attempt ended, seconds since the epoch.
        released: The task was claimed but not attempted: it is given back as it
            was (its attempt uncounted); the other fields are ignored.
        outcome: What the endpoint said became of the task, or None.
        detail: The error in full (a traceback, or the status and body answered), or None.
    """

    id: int
    attempt: int
    state: TaskState
    due: float
    status: int | None
    error: str | None
    executed: bool
    finished: float
    released: bool = False
    outcome: str | None = None
    detail: str | None = None


class TaskStore:
    """Tasks in one SQLite file, shared safely by threads and processes.

    Args:
        path: The database file, made ``0600``; a missing directory is made ``0700`` (see :mod:`im_task.datadir`).
        busy_timeout: Seconds to wait for another writer before failing.
    """

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        make_file_dir(path)  # a directory made here is private: 0700, with a .gitignore
        make_private_file(path)  # 0600 before SQLite opens it; its -wal and -shm files take that mode
        self._lock = threading.Lock()
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        with self._lock:  # a fork() meanwhile waits: the child must not inherit a half-made connection
            with _stores_lock:
                _stores.add(self)
            self._conn = self._connect()
            try:
                (version,) = self._conn.execute("PRAGMA user_version").fetchone()
                if version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f"{path} was made by a newer im-task (schema {version}; this one knows {SCHEMA_VERSION})"
                    )
                if version < SCHEMA_VERSION:  # a new or older file: no write lock is taken to open a current one
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        (version,) = self._conn.execute("PRAGMA user_version").fetchone()  # another may have won
                        if version < SCHEMA_VERSION:
                            _upgrade(self._conn, version)
                        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                    self._conn.execute("COMMIT")
                (prefix,) = self._conn.execute("SELECT value FROM queue_file WHERE key = 'name_prefix'").fetchone()
            except BaseException:
                self._conn.close()
                self._conn = None
                self._closed = True
                raise
        if not (isinstance(prefix, str) and len(prefix) == _PREFIX_DIGITS and _is_hex(prefix)):
            self.close()
            raise sqlite3.DatabaseError(f"{path} is not a queue file im-task can read: its name prefix is {prefix!r}")
        self._prefix: str = prefix
        self._last_headers: tuple[dict[str, str], str] = ({}, "{}")  # see _headers_json; under the lock
        self._info_columns = _INFO_COLUMNS.replace("{name}", f"IFNULL(name, '{prefix}' || printf('%016x', id))")

    def generated_name(self, task_id: int) -> str:
        """The name of a task enqueued without one: the file's name prefix and the task's id, 32 hex digits.

        Ids are never given twice in a file, so neither are these names; the
        prefix, drawn when the file was made, keeps them apart from another
        file's.
        """
        return f"{self._prefix}{task_id:016x}"

    def _generated_id(self, name: str) -> int | None:
        """The id a name of this file's generated form stands for, or None for any other name."""
        if len(name) != 2 * _PREFIX_DIGITS or not name.startswith(self._prefix):
            return None
        try:
            task_id = int(name[_PREFIX_DIGITS:], 16)
        except ValueError:
            return None
        return task_id if self.generated_name(task_id) == name else None

    def _named(self, name: str) -> tuple[str, list[Any]]:
        """The SQL condition (and its arguments) for the task of that name, given or generated."""
        task_id = self._generated_id(name)
        if task_id is None:
            return "name = ?", [name]
        return "(name = ? OR (name IS NULL AND id = ?))", [name, task_id]

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.path), timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the file.

        SQLite's ``PRAGMA data_version``: a cheap read of the file's header,
        so a dispatcher can watch for tasks other processes enqueue without
        running a query.
        """
        with self._read() as conn:
            (version,) = conn.execute("PRAGMA data_version").fetchone()
        return int(version)

    def close(self) -> None:
        """Closes the database; later calls do nothing."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("the task store is closed")
            if self._conn is None:  # in a child process after fork(): a connection of its own
                self._conn = self._connect()
            yield self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._read() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _roll_back(conn)
                raise

    def _after_fork_in_child(self) -> None:
        """Drops the connection inherited through ``fork()``; the next use opens the child's own.

        The inherited one is kept, never used nor closed: closing it would
        release locks SQLite thinks the parent's connection holds.
        """
        if self._conn is not None:
            _abandoned.append(self._conn)
            self._conn = None

    # -- enqueue ---------------------------------------------------------

    def add(self, task: NewTask, *, now: float, name_retention: float) -> str:
        """Inserts a task, refusing a name in use or remembered.

        Args:
            task: The task.
            now: The time, seconds since the epoch.
            name_retention: Seconds a finished task's name stays taken.

        Returns:
            The task's name: its own, or the one generated for it.

        Raises:
            TaskAlreadyExistsError: A task of that name is queued or running,
                or finished less than ``name_retention`` seconds ago.
            EnqueueError: The database failed or is closed, or the name is
                one this file will generate for a task to come.
        """
        [result] = self.add_many([task], now=now, name_retention=name_retention)
        if isinstance(result, EnqueueError):
            raise result
        return result

    def add_many(self, tasks: Sequence[NewTask], *, now: float, name_retention: float) -> list[str | EnqueueError]:
        """Inserts tasks in one transaction; a name in use or remembered refuses its task only.

        A refused task changes nothing (its ``INSERT`` fails alone, SQLite
        undoing that statement only), so the others commit together. A
        database failure rolls the whole batch back.

        Args:
            tasks: The tasks; a name given twice is refused the second time.
            now: The time, seconds since the epoch.
            name_retention: Seconds a finished task's name stays taken.

        Returns:
            For each task, in order: its name (its own, or the one generated
            for it) when it was stored, or the error refusing it
            (:class:`~im_task.TaskAlreadyExistsError` for a name taken).

        Raises:
            EnqueueError: The database failed or is closed: no task was stored.
        """
        results: list[str | EnqueueError] = []
        # The transaction by hand rather than through _write: this is the hot path of every enqueue.
        with self._lock:
            try:
                if self._closed:
                    raise sqlite3.ProgrammingError("the task store is closed")
                conn = self._conn
                if conn is None:  # in a child process after fork(): a connection of its own
                    conn = self._conn = self._connect()
                if len(tasks) == 1 and tasks[0].name is None:  # the common enqueue: one statement, one transaction
                    return [self._insert_alone(conn, tasks[0], now)]
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for task in tasks:
                        try:
                            results.append(self._insert(conn, task, now=now, name_retention=name_retention))
                        except EnqueueError as exc:
                            results.append(exc)
                    conn.execute("COMMIT")
                except BaseException:
                    _roll_back(conn)
                    raise
            except sqlite3.Error as exc:
                what = "the task" if len(tasks) == 1 else f"the {len(tasks)} tasks"
                raise EnqueueError(f"The local queue at {self.path} could not store {what}: {exc}") from exc
        return results

    def _headers_json(self, headers: dict[str, str]) -> str:
        """The JSON of a task's headers; those of the last task, mostly the same, are not encoded again."""
        last, text = self._last_headers
        if headers != last:
            text = json.dumps(headers, separators=(",", ":"))
            self._last_headers = (dict(headers), text)
        return text

    def _insert_alone(self, conn: sqlite3.Connection, task: NewTask, now: float) -> str:
        """Inserts one task without a name as a transaction of its own; returns the name generated for it.

        A statement outside ``BEGIN`` is its own transaction in SQLite, with
        the write lock taken before it reads (an ``INSERT`` starts as a
        writer), so this is ``BEGIN IMMEDIATE``, the insert and ``COMMIT``
        in one statement: the id floor it reads cannot change before its
        write, and a failure (a full disk) leaves nothing behind.
        """
        try:
            task_id = conn.execute(_INSERT, _row(task, now, self._headers_json(task.headers))).lastrowid
        except BaseException:
            _roll_back(conn)  # SQLite ends a failed statement's transaction itself; this makes sure
            raise
        return self.generated_name(cast(int, task_id))

    def _insert(self, conn: sqlite3.Connection, task: NewTask, *, now: float, name_retention: float) -> str:
        """Inserts one task (inside a write transaction), replacing a finished one whose name may be reused.

        Returns:
            The task's name.

        Raises:
            TaskAlreadyExistsError: The name is in use or remembered; nothing was changed.
            EnqueueError: The name is of this file's generated form, for a task to come; nothing was changed.
        """
        name = task.name
        if name is None:
            task_id = conn.execute(_INSERT, _row(task, now, self._headers_json(task.headers))).lastrowid
            return self.generated_name(cast(int, task_id))
        generated = self._generated_id(name)
        if generated is not None:  # the name of a task enqueued without one (of this queue or another), or to come
            old = conn.execute(
                "SELECT id, state, finished FROM tasks WHERE id = ? AND queue = ? AND name IS NULL",
                (generated, task.queue),
            ).fetchone()
            if old is not None:
                self._replace(conn, task, old, now=now, name_retention=name_retention)
                return name
            (given,) = conn.execute(
                "SELECT MAX(IFNULL((SELECT MAX(id) FROM tasks), 0), value) FROM queue_file WHERE key = 'id_floor'"
            ).fetchone()
            if generated > given:
                raise EnqueueError(
                    f"The task name {name!r} is of the form the local queue at {self.path} generates, for a task it "
                    "has not made yet: give the task another name."
                )
        row = _row(task, now, self._headers_json(task.headers))
        try:
            conn.execute(_INSERT, row)
        except sqlite3.IntegrityError:
            old = conn.execute(
                "SELECT id, state, finished FROM tasks WHERE queue = ? AND name = ?", (task.queue, name)
            ).fetchone()
            if old is None:  # pragma: no cover - only the unique index raises IntegrityError
                raise
            self._replace(conn, task, old, now=now, name_retention=name_retention)
        return name

    @staticmethod
    def _replace(
        conn: sqlite3.Connection, task: NewTask, old: Sequence[Any], *, now: float, name_retention: float
    ) -> None:
        """Inserts a task in place of the finished one of its name, or refuses it while the name is taken."""
        old_id, state, finished = old
        if state in _ACTIVE:
            raise name_taken(task.queue, cast(str, task.name), f"is {state}") from None
        if finished is not None and finished > now - name_retention:
            raise name_taken(
                task.queue,
                cast(str, task.name),
                f"finished {now - finished:.0f} s ago (names stay taken {name_retention:g} s after)",
            ) from None
        conn.execute(_KEEP_IDS)
        conn.execute("DELETE FROM tasks WHERE id = ?", (old_id,))
        conn.execute(_INSERT, _row(task, now, json.dumps(task.headers, separators=(",", ":"))))

    # -- dispatch --------------------------------------------------------

    def claim(
        self,
        owner: str,
        limit: int,
        *,
        now: float,
        lease_until: float,
        on_lost: LostAttemptPolicy,
        settle: Sequence[Settlement] = (),
        allowance: Callable[[str], int] | None = None,
        blocked: Collection[str] = (),
    ) -> list[ClaimedTask]:
        """Leases up to ``limit`` due queued tasks, oldest due first, and starts their attempt.

        The attempt is counted (and the first one's time stamped) here, so a
        dispatcher claims only tasks it starts delivering at once. First, in
        the same transaction, running tasks whose lease ran out (their holder
        died or stalled) are settled: the lost attempt failed with the reason
        :data:`LEASE_EXPIRED`, and ``on_lost`` says when to retry it, or that
        the retry policy gives up on the task. So a task that kills its
        process keeps to its retry policy, and expired leases never wait
        behind a backlog of due tasks.

        Args:
            owner: The claiming dispatcher's id.
            limit: Most tasks to claim.
            now: The time, seconds since the epoch.
            lease_until: When the new leases run out.
            on_lost: Given a lost attempt, returns when to retry it (seconds since the epoch), or None to give up.
                It runs inside the write transaction: keep it quick and free of I/O.
            settle: Outcomes of ``owner``'s attempts to record first, in the same transaction (see :meth:`settle`).
            allowance: Most tasks of a queue to claim now (its rate and concurrency limits), or None for no limit.
            blocked: Queues none of whose tasks may be claimed now.

        Returns:
            The claimed tasks, bodies included, oldest due first.
        """
        if limit <= 0:
            if settle:
                self.settle(owner, settle)
            return []
        with self._write() as conn:
            self._record(conn, owner, settle)
            self._settle_lost(conn, now, on_lost)
            rows = self._due(conn, now, limit, allowance, set(blocked))
            if not rows:
                return []
            ids = [row[0] for row in rows]
            marks = ",".join("?" * len(ids))
            conn.execute(
                "UPDATE tasks SET attempts = attempts + 1, state = 'running', lease_owner = ?, lease_until = ?, "
                f"first_attempt = COALESCE(first_attempt, ?) WHERE id IN ({marks})",
                (owner, lease_until, now, *ids),
            )
        decoded: dict[str, dict[str, str]] = {}  # the tasks of one claim mostly share their headers' JSON
        claimed: list[ClaimedTask] = []
        for (
            row_id,
            queue,
            name,
            url,
            headers,
            body,
            eta,
            attempts,
            executions,
            first,
            status,
            error,
            deadline,
            options,
        ) in rows:
            own = decoded.get(headers)
            if own is None:
                own = decoded[headers] = json.loads(headers)
            claimed.append(
                ClaimedTask(
                    row_id,
                    queue,
                    name if name is not None else self.generated_name(row_id),
                    url,
                    own,
                    body,
                    eta,
                    attempts + 1,
                    executions,
                    now if first is None else first,
                    status,
                    error,
                    deadline,
                    None if options is None else _load_options(options),
                )
            )
        return claimed

    @staticmethod
    def _due(
        conn: sqlite3.Connection, now: float, limit: int, allowance: Callable[[str], int] | None, blocked: set[str]
    ) -> list[Any]:
        """Up to ``limit`` due tasks, oldest due first, within each queue's allowance (inside a transaction)."""
        chosen: list[Any] = []
        left: dict[str, int] = {}
        while len(chosen) < limit:
            skip = list(blocked)
            taken = [row[0] for row in chosen]
            rows = conn.execute(
                f"SELECT {_CLAIM_COLUMNS} FROM tasks WHERE state = 'queued' AND due <= ? "
                f"AND queue NOT IN ({','.join('?' * len(skip))}) AND id NOT IN ({','.join('?' * len(taken))}) "
                "ORDER BY due, id LIMIT ?",
                (now, *skip, *taken, limit - len(chosen)),
            ).fetchall()
            if not rows:
                break
            for row in rows:
                queue = row[1]
                if queue in blocked:
                    continue
                if allowance is not None:
                    if queue not in left:
                        left[queue] = allowance(queue)
                    if left[queue] <= 0:
                        blocked.add(queue)
                        continue
                    left[queue] -= 1
                    if left[queue] <= 0:
                        blocked.add(queue)
                chosen.append(row)
        return chosen

    def _settle_lost(self, conn: sqlite3.Connection, now: float, on_lost: LostAttemptPolicy) -> None:
        """Settles running tasks whose lease ran out as failed attempts (inside a write transaction)."""
        rows = conn.execute(
            "SELECT id, queue, name, url, attempts, first_attempt, retry_options FROM tasks "
            "WHERE state = 'running' AND lease_until <= ? ORDER BY lease_until, id LIMIT ?",
            (now, _REAP_BATCH),
        ).fetchall()
        for row_id, queue, stored_name, url, attempts, first_attempt, retry_options in rows:
            first = now if first_attempt is None else first_attempt
            name = stored_name if stored_name is not None else self.generated_name(row_id)
            lost = LostAttempt(row_id, queue, name, url, attempts, first, _load_options(retry_options), now)
            due = on_lost(lost)
            conn.execute(
                "UPDATE tasks SET state = ?, due = COALESCE(?, due), finished = ?, last_status = NULL, "
                "last_error = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
                ("gave-up" if due is None else "queued", due, now if due is None else None, LEASE_EXPIRED, row_id),
            )

    def renew(self, owner: str, *, lease_until: float) -> None:
        """Extends every lease ``owner`` holds until ``lease_until``."""
        with self._write() as conn:
            conn.execute(
                "UPDATE tasks SET lease_until = ? WHERE state = 'running' AND lease_owner = ?", (lease_until, owner)
            )

    def settle(self, owner: str, settlements: Sequence[Settlement]) -> int:
        """Records the outcome of attempts, in one transaction.

        A settlement whose task is no longer leased to ``owner`` for that
        attempt (its lease ran out and someone else claimed it) is ignored.

        Args:
            owner: The dispatcher that made the attempts.
            settlements: What happened.

        Returns:
            How many were recorded.
        """
        with self._write() as conn:
            return self._record(conn, owner, settlements)

    @staticmethod
    def _record(conn: sqlite3.Connection, owner: str, settlements: Sequence[Settlement]) -> int:
        """Records settlements (inside a write transaction); returns how many applied.

        Each kind is one ``executemany``: one prepared statement stepped per
        settlement, without a Python call per row.
        """
        released = [(s.id, owner, s.attempt) for s in settlements if s.released]
        ended = [
            (
                s.state,
                s.state,
                s.due,
                s.status,
                s.error,
                int(s.executed),
                s.state,
                s.finished,
                s.state == "done",
                s.outcome,
                s.state == "done",
                None if s.detail is None else s.detail[-_DETAIL_LIMIT:],
                s.id,
                owner,
                s.attempt,
            )
            for s in settlements
            if not s.released
        ]
        recorded = 0
        if released:
            recorded += conn.executemany(_RELEASE, released).rowcount
        if ended:
            recorded += conn.executemany(_SETTLE, ended).rowcount
        return recorded

    def next_wake(self, owner: str) -> float | None:
        """When the next task becomes claimable, or None when no task is waiting.

        That is the earliest due time of a queued task, or the earliest lease
        expiry of a task another dispatcher holds.
        """
        with self._read() as conn:
            (due,) = conn.execute("SELECT MIN(due) FROM tasks WHERE state = 'queued'").fetchone()
            (lease,) = conn.execute(
                "SELECT MIN(lease_until) FROM tasks WHERE state = 'running' AND lease_owner IS NOT ?", (owner,)
            ).fetchone()
        times = [t for t in (due, lease) if t is not None]
        return min(times) if times else None

    def busy(self, *, now: float, scheduled: bool) -> bool:
        """Whether a task is running or due (or, with ``scheduled``, waiting at all)."""
        with self._read() as conn:
            if scheduled:
                query = "SELECT EXISTS (SELECT 1 FROM tasks WHERE state IN ('queued', 'running'))"
                (found,) = conn.execute(query).fetchone()
            else:
                query = (
                    "SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 'running') "
                    "OR EXISTS (SELECT 1 FROM tasks WHERE state = 'queued' AND due <= ?)"
                )
                (found,) = conn.execute(query, (now,)).fetchone()
        return bool(found)

    def leased_elsewhere(self, owner: str | None, *, now: float) -> bool:
        """Whether a dispatcher other than ``owner`` holds a live lease: another process is delivering."""
        with self._read() as conn:
            (found,) = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM tasks "
                "WHERE state = 'running' AND lease_until > ? AND lease_owner IS NOT ?)",
                (now, owner),
            ).fetchone()
        return bool(found)

    def prune(self, *, finished_before: float) -> int:
        """Forgets done tasks that finished before a time; returns how many."""
        with self._write() as conn:
            conn.execute(_KEEP_IDS)
            return conn.execute("DELETE FROM tasks WHERE state = 'done' AND finished < ?", (finished_before,)).rowcount

    def compact(self) -> bool:
        """Checkpoints the write-ahead log, and vacuums the file when much of it is free.

        The log is folded into the file and truncated (as far as readers of
        other processes allow); the file is rewritten smaller when at least
        half of it, and 4 MB, is free pages (after a purge, or once many done
        tasks were forgotten).

        Returns:
            Whether the file was vacuumed.
        """
        with self._read() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            (free,) = conn.execute("PRAGMA freelist_count").fetchone()
            (size,) = conn.execute("PRAGMA page_size").fetchone()
            if not (free * size >= _VACUUM_MIN_BYTES and pages and free / pages >= _VACUUM_FREE_SHARE):
                return False
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return True

    # -- inspection ------------------------------------------------------

    def counts(self, *, now: float, queue: str | None = None) -> QueueStats:
        """Tasks by state (the transport's counters left at zero)."""
        where, args = ("WHERE queue = ?", (queue,)) if queue is not None else ("", ())
        with self._read() as conn:
            by_state = dict(conn.execute(f"SELECT state, COUNT(*) FROM tasks {where} GROUP BY state", args).fetchall())
            due_where = "AND queue = ?" if queue is not None else ""
            (due,) = conn.execute(
                f"SELECT COUNT(*) FROM tasks WHERE state = 'queued' AND due <= ? {due_where}", (now, *args)
            ).fetchone()
        return QueueStats(
            queued=by_state.get("queued", 0),
            due=due,
            running=by_state.get("running", 0),
            done=by_state.get("done", 0),
            failed=by_state.get("failed", 0),
            gave_up=by_state.get("gave-up", 0),
            dropped=by_state.get("dropped", 0),
        )

    def tasks(self, *, state: TaskState | None = None, queue: str | None = None, limit: int = 100) -> list[TaskInfo]:
        """Tasks, running first, then queued by due time, then failed and done ones, newest first."""
        conditions: list[str] = []
        args: list[Any] = []
        if state is not None:
            conditions.append("state = ?")
            args.append(state)
        if queue is not None:
            conditions.append("queue = ?")
            args.append(queue)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        query = (
            f"SELECT {self._info_columns} FROM tasks {where} ORDER BY {_ORDER_STATES}, "
            "CASE WHEN state IN ('queued', 'running') THEN due ELSE -finished END, id LIMIT ?"
        )
        with self._read() as conn:
            rows = conn.execute(query, (*args, limit)).fetchall()
        return [_info(row) for row in rows]

    def detail(self, name: str, *, queue: str | None = None) -> list[TaskDetail]:
        """The tasks of that name (one per queue, or the one of ``queue``), with body and last error in full."""
        where, args = self._named(name)
        if queue is not None:
            where += " AND queue = ?"
            args.append(queue)
        query = f"SELECT {self._info_columns}, headers, body, error_detail FROM tasks WHERE {where} ORDER BY queue"
        with self._read() as conn:
            rows = conn.execute(query, args).fetchall()
        return [
            TaskDetail(info=_info(row[:-3]), headers=json.loads(row[-3]), body=bytes(row[-2]), error_detail=row[-1])
            for row in rows
        ]

    def retry(
        self,
        *,
        now: float,
        name: str | None = None,
        queue: str | None = None,
        states: Sequence[TaskState] = (),
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Queues finished tasks again, due now, as new tasks (attempts start again from 0).

        A done task has no body left, so it cannot be retried; tasks being
        delivered or waiting are left alone.

        Args:
            now: The time, seconds since the epoch.
            name: Only the task of this name.
            queue: Only tasks of this queue.
            states: Only tasks in these states (among failed, gave-up, dropped); all three when empty.
            headers: Headers to add to (or replace in) each task's own, e.g. the signed mark of a re-run.

        Returns:
            How many tasks were queued again.
        """
        where, args = _in_states([s for s in states or FINISHED_STATES if s != "done"], queue=queue)
        if name is not None:
            named, more = self._named(name)
            where += f" AND {named}"
            args += more
        patch = json.dumps(dict(headers or {}), separators=(",", ":"))
        with self._write() as conn:
            return conn.execute(
                "UPDATE tasks SET state = 'queued', due = ?, attempts = 0, executions = 0, first_attempt = NULL, "
                "finished = NULL, lease_owner = NULL, lease_until = NULL, headers = json_patch(headers, ?) "
                f"WHERE {where}",
                (now, patch, *args),
            ).rowcount

    def purge(self, *, queue: str | None = None, states: Sequence[TaskState] = ("queued",)) -> int:
        """Deletes tasks in the given states (never running ones); returns how many."""
        chosen = [s for s in states if s != "running"]
        unknown = set(chosen) - set(STATES)
        if unknown:
            raise ValueError(f"Unknown task state(s): {', '.join(sorted(unknown))}.")
        if not chosen:
            return 0
        where, args = _in_states(chosen, queue=queue)
        with self._write() as conn:
            conn.execute(_KEEP_IDS)
            return conn.execute(f"DELETE FROM tasks WHERE {where}", args).rowcount


def _in_states(states: Sequence[str], *, queue: str | None = None) -> tuple[str, list[Any]]:
    """The SQL condition (and its arguments) for tasks in ``states``, of that queue when given."""
    where = f"state IN ({','.join('?' * len(states))})"
    args: list[Any] = list(states)
    if queue is not None:
        where += " AND queue = ?"
        args.append(queue)
    return where, args


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Makes the tables of a new file, or brings a file of an older schema to this one (inside a transaction).

    Version 3 stores no name for tasks enqueued without one, and gives ids
    without ``AUTOINCREMENT`` (see :data:`_INSERT`): its table is made anew
    and the tasks are copied into it, their ids, names and states kept. The
    old ids stay below the floor, so none is given again.
    """
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tasks'").fetchone()
    if not exists:
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(_FILE_ROWS, (secrets.token_hex(_PREFIX_DIGITS // 2), 0))
        return
    if version == 0:  # a file made before the schema had a version
        columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
        version = 2 if "outcome" in columns else 1
    for old in range(version, 2):
        for statement in _MIGRATIONS.get(old, ()):
            conn.execute(statement)
    floor = conn.execute("SELECT IFNULL(MAX(id), 0) FROM tasks").fetchone()[0]
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'").fetchone():
        (given,) = conn.execute("SELECT IFNULL(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'tasks'").fetchone()
        floor = max(floor, given)
    conn.execute(_TASKS.replace("CREATE TABLE tasks", "CREATE TABLE tasks_v3", 1))
    conn.execute(f"INSERT INTO tasks_v3 ({_COLUMNS}) SELECT {_COLUMNS} FROM tasks ORDER BY id")
    conn.execute("DROP TABLE tasks")
    conn.execute("ALTER TABLE tasks_v3 RENAME TO tasks")
    for statement in (*_INDEXES, _FILE_KEYS):
        conn.execute(statement)
    conn.execute(_FILE_ROWS, (secrets.token_hex(_PREFIX_DIGITS // 2), floor))


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _before_fork() -> None:
    """Takes every store's lock, so that no transaction is open when the process forks."""
    _stores_lock.acquire()
    stores = list(_stores)
    for store in stores:
        store._lock.acquire()
    _held_across_fork[:] = stores


def _release_after_fork() -> list[TaskStore]:
    stores = list(_held_across_fork)
    _held_across_fork.clear()
    for store in stores:
        store._lock.release()
    _stores_lock.release()
    return stores


def _after_fork_in_parent() -> None:
    _release_after_fork()


def _after_fork_in_child() -> None:
    for store in _release_after_fork():
        store._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


_INFO_COLUMNS = (  # {name}: the name, given or generated (TaskStore._info_columns)
    "queue, {name}, url, state, attempts, executions, eta, "
    "CASE WHEN state = 'running' THEN lease_until ELSE due END, created, finished, "
    "last_status, last_error, LENGTH(body), outcome"
)


def _info(row: Sequence[Any]) -> TaskInfo:
    q, name, url, st, attempts, executions, eta, due, created, finished, status, error, size, outcome = row
    return TaskInfo(
        queue=q,
        name=name,
        url=url,
        state=cast(TaskState, st),
        attempts=attempts,
        executions=executions,
        eta=_datetime(eta),
        due=_datetime(due if due is not None else eta),
        created=_datetime(created),
        finished=None if finished is None else _datetime(finished),
        last_status=status,
        last_error=error,
        size=size or 0,
        outcome=outcome,
    )


def is_corrupt(exc: BaseException) -> bool:
    """Whether a SQLite error says the file is damaged, or is not a database at all."""
    return isinstance(exc, sqlite3.DatabaseError) and _primary_code(exc) in _SQLITE_CORRUPT


def is_disk_full(exc: BaseException) -> bool:
    """Whether a SQLite error says the disk is full (``SQLITE_FULL``), or an OS error says no space is left."""
    if isinstance(exc, sqlite3.Error):
        return _primary_code(exc) == _SQLITE_FULL
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EFBIG)


def _primary_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of an error, or None when it cannot be told.

    Python 3.11 and later give it (``sqlite_errorcode``); on Python 3.10 it is read from SQLite's own message,
    for the codes this module acts on.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF
    text = str(exc).lower()
    for words, primary in _CODE_MESSAGES:
        if words in text:
            return primary
    return None


#: SQLite's messages (``sqlite3_errstr``) for the primary codes read from them when the error carries no code.
_CODE_MESSAGES = (
    ("database or disk is full", _SQLITE_FULL),
    ("disk i/o error", _SQLITE_IOERR),
    ("malformed", _SQLITE_CORRUPT[0]),
    ("not a database", _SQLITE_CORRUPT[1]),
)


def write_failure(path: Path, exc: BaseException) -> str | None:
    """What to free when writing the file failed for want of room, or None for another failure.

    SQLite says ``SQLITE_FULL`` for a full disk, but only "disk I/O error"
    when a write fails because the process's file size limit (``ulimit -f``)
    is reached; so for an I/O error the disk and the limit are looked at.
    """
    full = is_disk_full(exc)
    if not full and not (isinstance(exc, sqlite3.Error) and _primary_code(exc) == _SQLITE_IOERR):
        return None
    free = _free_bytes(path.parent)
    if free is not None and free < _LOW_SPACE:
        return (
            f"the disk holding {path.parent} is full ({free // 1024} KB free): free space there (old logs, build "
            "files, `im-task queue purge --state done`), or move the data directory"
        )
    limit = _file_size_limit()
    if limit is not None:
        return (
            f"this process may write files of at most {limit} bytes (ulimit -f): raise the limit, or free room "
            f"in {path} (`im-task queue purge --state done`)"
        )
    if full:
        return f"the disk holding {path.parent} is full: free space there, or move the data directory"
    return None


def _free_bytes(folder: Path) -> int | None:
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize


def _file_size_limit() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def corruption_message(path: Path, exc: BaseException) -> str:
    """What to tell a person whose queue file is damaged: which file, and what to do."""
    return (
        f"The local queue's database {path} is damaged ({exc}). Stop every process using it, move it aside "
        f"(mv {path} {path}.corrupt; also move any {path.name}-wal and {path.name}-shm next to it) and start "
        f"again: a new, empty queue is made. The tasks in it are lost unless you recover them, e.g. "
        f"`sqlite3 {path}.corrupt .recover | sqlite3 {path}`."
    )


def _roll_back(conn: sqlite3.Connection) -> None:
    """Ends a failed write transaction, also after a failed COMMIT (busy, disk full), which may leave it open.

    An open transaction would refuse every later BEGIN; a failing ROLLBACK must not hide the error that caused it.
    """
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _dump_options(options: RetryOptions | None) -> str | None:
    if options is None:
        return None
    return json.dumps(options.to_dict())


def _load_options(text: str | None) -> RetryOptions | None:
    return None if text is None else RetryOptions(**json.loads(text))


def _datetime(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
