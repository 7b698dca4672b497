"""Fault injection for the transactional outbox on Django: kills, races, slow and failing sends.

Run it as ``nox -s faults`` (full size, SQLite and, when the PostgreSQL
server programs are installed, a private PostgreSQL cluster on 127.0.0.1) or
``python tests/faults/outbox_faults.py --help``; ``tests/faults/test_outbox_faults.py``
runs it at a small size in the test suite.

What runs, on one database:

* **Enqueuers**, forked one after another, each committing orders (a row of
  ``fault_order`` and a transactional task, in one ``transaction.atomic()``)
  and SIGKILLing itself at one phase of one order, in turn: inside the
  transaction, after the commit before the claim, after the claim, inside
  the send, after the queue took the task but before the sent mark, after
  the sent mark.
* **Two sweepers** in their own processes, sweeping all along (one with
  ``older_than=0``, racing every send after commit; one with ``0.5``).
* **Long transactions**, held open longer than the sweep threshold, whose
  send is slow; **slow and failing sends**; a **killed database connection**
  right after the send (PostgreSQL: ``pg_terminate_backend``; SQLite: the
  connection is closed under Django).
* **The queue** accepts reused names (``--refuse-names`` makes it refuse
  them, as Cloud Tasks and the local queue do), keeping what it takes in a
  SQLite file of its own; a **worker** process delivers each task it took,
  in order, through im-task's real endpoint (``im_task.endpoints.handle_request``,
  signature checked), which marks the task's outbox row delivered before the
  task runs. The task (``ship``) counts a run.

Orders are real ``transactional=True`` calls of ``ship`` inside
``transaction.atomic()``, through a transaction binder whose storage has the
kill points. Then everything left is swept and delivered, and the counts are:
committed orders, runs, ``lost`` (a committed order whose task never ran),
``phantoms`` (a task ran with no committed order), ``duplicates`` (a task
that ran more than once), split into those of the window the sending side
cannot close (killed after the queue took the task and before the sent mark,
which the endpoint's delivery mark closes) and the others. All must be 0.
Only enqueuers are killed; sweepers and the worker are not.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import pickle
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("in_transaction", "before_claim", "after_claim", "in_send", "after_send", "after_mark")
#: The phase whose kills leave a sent task looking unsent: only the queue's name memory prevents a second run.
AMBIGUOUS_PHASE = "after_send"
OLDER_THAN = (0.0, 0.5)  # the two sweepers
#: Seconds a claim lasts: a send and its sent mark must finish within it. On SQLite, whose one write lock a
#: long transaction holds to its end, the sent mark waits behind every long transaction open at once, so the
#: lease there is set (in ``main``) to cover them; on PostgreSQL, a send here takes well under it.
LEASE = 2.0
THRESHOLD = 1.0  # the sweep threshold the long transactions outlast
LONG_TRANSACTION = 1.5
VERBOSE = False
#: Where ``ship`` counts its runs (set before the processes are forked).
_RUNS: dict[str, Any] = {"log": None}


@dataclass
class Report:
    """What a run found, on one database."""

    database: str
    refuse_names: bool
    kills: dict[str, int] = field(default_factory=dict)
    committed: int = 0
    runs: int = 0
    lost: int = 0
    phantoms: int = 0
    duplicates: int = 0
    extra_runs: int = 0
    duplicates_ambiguous: int = 0
    duplicates_other: int = 0
    taken_by_queue: int = 0
    marked_on_delivery: int = 0
    failed_deliveries: int = 0
    long_transactions: int = 0
    killed_connections: int = 0
    failed_sends: int = 0
    lease: float = 0.0
    other_duplicates: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No loss, no phantom, no duplicate (whether the queue refuses reused names or not), every delivery 200."""
        return (
            self.lost == 0
            and self.phantoms == 0
            and self.duplicates == 0
            and self.failed_deliveries == 0
            and self.committed > 0
        )


# The queue: a SQLite file of runs, shared by every process.


class RunLog:
    """The queue's tasks (``queue``), the task's runs (``runs``), and what the processes did (``events``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            yield connection
        finally:
            connection.close()

    def create(self, *, refuse_names: bool) -> None:
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            unique = "UNIQUE" if refuse_names else ""
            db.execute(f"CREATE TABLE queue (id INTEGER PRIMARY KEY, name TEXT NOT NULL {unique}, request BLOB)")
            db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, pid INTEGER)")
            db.execute("CREATE TABLE events (kind TEXT, name TEXT)")

    def event(self, kind: str, name: str = "") -> None:
        with self.connect() as db:
            db.execute("INSERT INTO events VALUES (?, ?)", (kind, name))


def make_queue(log: RunLog, *, refuse_names: bool, faults: bool) -> Any:
    """The queue transport: takes a task by writing it to the queue table; slow or failing now and then."""
    from im_task.errors import EnqueueError, TaskAlreadyExistsError
    from im_task.transports import TaskRequest, Transport

    class FaultQueue(Transport):
        def __init__(self) -> None:
            self.random = random.Random(os.getpid())

        def enqueue(self, request: TaskRequest) -> str | None:
            hook("in_send", request)
            if faults and self.random.random() < 0.05:
                log.event("failed_send", str(request.name))
                raise EnqueueError("the queue could not be reached")
            if faults and self.random.random() < 0.05:
                time.sleep(self.random.uniform(0.05, 0.3))  # slow, well within the lease
            with log.connect() as db:
                try:
                    db.execute("INSERT INTO queue (name, request) VALUES (?, ?)", (request.name, pickle.dumps(request)))
                except sqlite3.IntegrityError:
                    raise TaskAlreadyExistsError(f"task {request.name} already exists") from None
            after_send(request)
            return request.name

    return FaultQueue()


# The task, and the worker delivering the queue's tasks to the endpoint.


def _define_task() -> Any:
    from im_task import task

    @task
    def ship(number: int) -> None:
        """An order's task: counts a run under its task name."""
        from im_task.context import get_task_name

        with _RUNS["log"].connect() as db:
            db.execute("INSERT INTO runs (name, pid) VALUES (?, ?)", (get_task_name(), os.getpid()))

    return ship


ship = _define_task()


def worker(log: RunLog, drained: Path) -> None:
    """Delivers every task the queue took, in order, through the real endpoint; ends once ``drained`` exists."""
    from im_task.endpoints import handle_request
    from im_task.transports import InProcessTransport

    delivery = InProcessTransport(handle_request)
    last = 0
    while True:
        done = drained.exists()  # read before the queue: a task taken before it was made is delivered
        with log.connect() as db:
            rows = db.execute("SELECT id, request FROM queue WHERE id > ? ORDER BY id", (last,)).fetchall()
        for last, blob in rows:  # noqa: B007 - the last id read is where the next poll starts
            request = pickle.loads(blob)
            response = delivery.deliver(request)
            if response.status != 200:
                log.event("failed_delivery", f"{request.name}: {response.status}")
        if done and not rows:
            return
        if not rows:
            time.sleep(0.01)


# Kill points.

_KILL: dict[str, Any] = {}  # {"order": n, "phase": p} in an enqueuer that is to die
_ORDER: dict[str, Any] = {"n": -1, "name": None, "log": None}
_AFTER_SEND: dict[str, Any] = {}


def hook(phase: str, request: Any = None) -> None:
    """SIGKILLs this process when it is the enqueuer chosen to die at this phase of this order."""
    if _KILL and _KILL["phase"] == phase and _KILL["order"] == _ORDER["n"]:
        if request is not None and request.name != _ORDER["name"]:
            return  # another task (a sweep in this process would be one)
        _ORDER["log"].event(f"kill:{phase}", str(_ORDER["name"]))
        os.kill(os.getpid(), signal.SIGKILL)


def after_send(request: Any) -> None:
    hook("after_send", request)
    action = _AFTER_SEND.pop(request.name, None)
    if action is not None:
        action()


def make_storage(alias: str = "default") -> Any:
    """The Django storage with kill points at each of its steps."""
    from im_task_django.outbox import DjangoOutboxStorage

    class HookedStorage(DjangoOutboxStorage):
        def add(self, request: Any, owner: str) -> int:
            key = super().add(request, owner)
            _ORDER["name"] = request.name
            return key

        def claim(self, key: int, owner: str, seconds: float, older_than: float | None) -> bool:
            sender = owner.startswith("sender")
            if sender:
                hook("before_claim")
            claimed = super().claim(key, owner, seconds, older_than)
            if sender and claimed:
                hook("after_claim")
            return claimed

        def mark_sent(self, key: int) -> None:
            super().mark_sent(key)
            hook("after_mark")

        def mark_delivered(self, name: str) -> bool:
            marked = super().mark_delivered(name)
            if marked:
                _RUNS["log"].event("marked_on_delivery", name)
            return marked

    return HookedStorage(alias)


class HookedBinder:
    """The transaction binder of ``transaction.atomic()`` on the default database, through :func:`make_storage`."""

    description = "the fault harness's outbox"

    @property
    def outbox_storage(self) -> Any:
        return make_storage()

    def in_transaction(self) -> bool:
        from django.db import connection

        return connection.in_atomic_block

    def enqueue_on_commit(self, request: Any, transport: Any) -> str:
        from im_task.outbox import enqueue_on_commit

        return enqueue_on_commit(make_storage(), request, transport, lease=LEASE)


# Django set-up.


def setup_django(database: dict[str, Any]) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["im_task_django"],
        DATABASES={"default": database},
        USE_TZ=True,
        IM_TASK={
            "ENVIRONMENT": "development",
            "SECRET": "fault-injection-secret-0123456789abc",
            "DATA_DIR": database["_data"],
        },
        LOGGING_CONFIG=None,
    )
    del database["_data"]
    django.setup()
    if not VERBOSE:
        logging.getLogger("im_task").setLevel(logging.CRITICAL)  # the expected warnings of every injected fault


def create_tables() -> None:
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", "im_task_django", verbosity=0)
    with connection.cursor() as cursor:
        key = "SERIAL PRIMARY KEY" if connection.vendor == "postgresql" else "INTEGER PRIMARY KEY AUTOINCREMENT"
        cursor.execute(f"CREATE TABLE fault_order (id {key}, task_name VARCHAR(100) NOT NULL)")


def kill_connection(vendor: str) -> None:
    """Kills this thread's database connection as a server restart would."""
    from django.db import connection

    if vendor == "postgresql":
        import psycopg

        pid = connection.connection.info.backend_pid  # type: ignore[union-attr]
        settings = connection.settings_dict
        with psycopg.connect(
            host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname=settings["NAME"]
        ) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    else:
        connection.connection.close()  # type: ignore[union-attr]


def commit_order(
    number: int, queue: Any, *, log: RunLog, hold: float = 0.0, kill_connection_after_send: bool = False
) -> None:
    """One order: a row and a transactional task in one transaction (held open ``hold`` seconds)."""
    from django.db import connection, transaction

    _ORDER["n"], _ORDER["name"] = number, None
    with transaction.atomic():
        name = str(ship.using(transactional=True)(number).name)  # sent to the configured queue after commit
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO fault_order (task_name) VALUES (%s)", [name])
        if kill_connection_after_send:
            _AFTER_SEND[name] = lambda: kill_connection(connection.vendor)
        if hold:
            time.sleep(hold)
        hook("in_transaction")
    if hold:
        log.event("long_transaction", name)
    if kill_connection_after_send:
        log.event("killed_connection", name)


# Processes.


def fork(work: Any) -> int:
    """Runs ``work()`` in a forked child (database connections closed first); returns its pid."""
    from django.db import connections

    connections.close_all()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            work()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def sweeper(older_than: float, stop: Path, queue: Any) -> None:
    from django.db import DatabaseError, connection

    from im_task.outbox import sweep

    storage = make_storage()
    while not stop.exists():
        try:
            sweep(storage, queue, older_than=older_than, lease=LEASE)
        except DatabaseError:  # as a cron job that failed: the next run goes on
            connection.close()
        time.sleep(0.02)


def enqueuer(first: int, count: int, kill: tuple[int, str] | None, queue: Any, log: RunLog, seed: int) -> None:
    chance = random.Random(seed)
    _ORDER["log"] = log
    if kill is not None:
        _KILL.update(order=kill[0], phase=kill[1])
    number = first
    while number < first + count or (_KILL and number < first + count + 20):  # more orders till the kill comes
        commit_order(number, queue, log=log, kill_connection_after_send=chance.random() < 0.04)
        if _KILL and _KILL["order"] == number:
            _KILL["order"] = number + 1  # the phase was not reached (a sweep claimed the row first): the next one
        number += 1


def run(
    database: str,
    *,
    kills: int,
    orders_per_kill: int,
    extra_orders: int,
    long_transactions: int,
    refuse_names: bool,
    work_dir: Path,
    pg: dict[str, Any] | None = None,
    delivery_marks: bool = True,
) -> Report:
    """One fault-injection run on ``database`` (``"sqlite"`` or ``"postgresql"``); returns its report."""
    started = time.monotonic()
    if database == "sqlite":
        settings: dict[str, Any] = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(work_dir / "app.sqlite3"),
            "OPTIONS": {"timeout": 60},
        }
        import django

        if django.VERSION >= (5, 1):
            settings["OPTIONS"]["transaction_mode"] = "IMMEDIATE"  # no lock upgrade deadlocks between writers
    else:
        assert pg is not None
        settings = {"ENGINE": "django.db.backends.postgresql", **pg}
    settings["_data"] = str(work_dir / "im_task")
    setup_django(settings)
    create_tables()
    from django.db import connection, connections

    vendor = connection.vendor
    log = RunLog(work_dir / "runs.sqlite3")
    log.create(refuse_names=refuse_names)
    _RUNS["log"] = log
    queue = make_queue(log, refuse_names=refuse_names, faults=True)
    from im_task import configure
    from im_task.transactions import register_binder, unregister_binder
    from im_task_django.transactions import binder

    unregister_binder(binder)  # transactional=True joins the harness's outbox, with its kill points
    register_binder(HookedBinder())
    configure(transport=queue)
    if not delivery_marks:  # the control: the endpoint of an im-task that does not mark delivered rows
        from im_task.state import STATE

        STATE.delivery_hook = None
    stop = work_dir / "stop"
    drained = work_dir / "drained"
    sweepers = [fork(lambda o=o: sweeper(o, stop, queue)) for o in OLDER_THAN]
    delivering = fork(lambda: worker(log, drained))
    report = Report(database=vendor, refuse_names=refuse_names)
    chance = random.Random(9)
    number = 0
    for index in range(kills):
        phase = PHASES[index % len(PHASES)]
        at = number + chance.randrange(orders_per_kill)
        pid = fork(lambda n=number, k=(at, phase), i=index: enqueuer(n, orders_per_kill, k, queue, log, i))
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            report.kills[phase] = report.kills.get(phase, 0) + 1
        elif not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            raise RuntimeError(f"an enqueuer failed (status {status}); see its traceback above")
        number += orders_per_kill
    # Orders with no kill: plain ones, long transactions with slow sends, both at once.
    holders = [
        fork(lambda n=n: (_ORDER.update(log=log), commit_order(n, queue, log=log, hold=LONG_TRANSACTION)))
        for n in range(number, number + long_transactions)
    ]
    number += long_transactions
    plain = fork(lambda: enqueuer(number, extra_orders, None, queue, log, 12345))
    for pid in [*holders, plain]:
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise RuntimeError(f"an enqueuer failed (status {status}); see its traceback above")
    stop.touch()
    for pid in sweepers:
        os.waitpid(pid, 0)
    # Whatever is left: claims of dead processes end, then one sweep sends it.
    from im_task.outbox import sweep
    from im_task_django.models import OutboxTask

    deadline = time.monotonic() + 120
    storage = make_storage()
    while OutboxTask.objects.filter(sent_at__isnull=True).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("rows stay unsent after every claim ended")
        sweep(storage, queue, older_than=0, lease=LEASE)
        time.sleep(0.2)
    sweep(storage, queue, older_than=0, lease=LEASE)  # purges
    drained.touch()
    os.waitpid(delivering, 0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT task_name FROM fault_order")
        committed = {row[0] for row in cursor.fetchall()}
    connections.close_all()
    with log.connect() as db:
        counts = dict(db.execute("SELECT name, COUNT(*) FROM runs GROUP BY name").fetchall())
        events = db.execute("SELECT kind, name FROM events").fetchall()
    ambiguous = {name for kind, name in events if kind == f"kill:{AMBIGUOUS_PHASE}"}
    duplicated = {name for name, count in counts.items() if count > 1}
    report.committed = len(committed)
    report.runs = sum(counts.values())
    report.lost = len(committed - set(counts))
    report.phantoms = len(set(counts) - committed)
    report.duplicates = len(duplicated)
    report.extra_runs = sum(counts[name] - 1 for name in duplicated)
    report.duplicates_ambiguous = len(duplicated & ambiguous)
    report.duplicates_other = len(duplicated - ambiguous)
    report.other_duplicates = [
        f"{name}: runs {counts[name]}, events {[kind for kind, other in events if other == name]}"
        for name in sorted(duplicated - ambiguous)[:10]
    ]
    report.lease = LEASE
    report.long_transactions = sum(1 for kind, _ in events if kind == "long_transaction")
    report.killed_connections = sum(1 for kind, _ in events if kind == "killed_connection")
    report.failed_sends = sum(1 for kind, _ in events if kind == "failed_send")
    report.marked_on_delivery = sum(1 for kind, _ in events if kind == "marked_on_delivery")
    report.failed_deliveries = sum(1 for kind, _ in events if kind == "failed_delivery")
    with log.connect() as db:
        report.taken_by_queue = db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
    report.seconds = round(time.monotonic() - started, 1)
    return report


# A private PostgreSQL cluster.


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


@contextlib.contextmanager
def postgresql_cluster(work_dir: Path) -> Iterator[dict[str, Any]]:
    """A throw-away PostgreSQL server on 127.0.0.1 (as the ``postgres`` user when run as root); stopped after."""
    bindir = _pg_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL's server programs (pg_ctl, initdb) are not installed")
    data = work_dir / "pgdata"
    port = _free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:
        os.chown(work_dir, *_uid_gid("postgres"))
        prefix = ["runuser", "-u", "postgres", "--"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        **quiet,
    )
    options = f"-p {port} -k {work_dir} -c listen_addresses=127.0.0.1 -c max_connections=50"
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(work_dir / "log"), "-w", "start"],
        check=True,
        **quiet,
    )
    try:
        yield {"NAME": "postgres", "USER": "postgres", "HOST": "127.0.0.1", "PORT": str(port)}
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            check=False,
        )


def _uid_gid(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--kills", type=int, default=240, help="enqueuers SIGKILLed, spread over the phases")
    parser.add_argument("--orders-per-kill", type=int, default=10, help="orders each killed enqueuer tries")
    parser.add_argument("--extra-orders", type=int, default=2000, help="orders of an enqueuer that is not killed")
    parser.add_argument("--long-transactions", type=int, default=8)
    parser.add_argument("--refuse-names", action="store_true", help="the queue refuses reused names")
    parser.add_argument(
        "--lease",
        type=float,
        default=None,
        help="seconds a claim lasts (default: 2 on PostgreSQL; on SQLite 2 + 1.5 per long transaction, which all "
        "hold its one write lock in turn)",
    )
    parser.add_argument(
        "--without-delivery-marks",
        action="store_true",
        help="the control: the endpoint does not mark delivered rows (kills after the send then run tasks twice)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")
    parser.add_argument("--verbose", action="store_true", help="show im-task's log of every injected fault")
    args = parser.parse_args(argv)
    global VERBOSE, LEASE  # noqa: PLW0603 - read by the forked processes
    VERBOSE = args.verbose
    if args.lease is not None:
        if not args.lease > 0:
            parser.error("--lease must be a number of seconds > 0")
        LEASE = args.lease
    elif args.database == "sqlite":
        LEASE = 2.0 + LONG_TRANSACTION * args.long_transactions
    for name in ("kills", "orders_per_kill", "extra_orders", "long_transactions"):
        if getattr(args, name) < (1 if name == "orders_per_kill" else 0):
            parser.error(f"--{name.replace('_', '-')} must be a whole number >= 0 (>= 1 for --orders-per-kill)")
    with tempfile.TemporaryDirectory(prefix="im-task-faults-") as tmp:
        work_dir = Path(tmp)
        sizes = {
            "kills": args.kills,
            "orders_per_kill": args.orders_per_kill,
            "extra_orders": args.extra_orders,
            "long_transactions": args.long_transactions,
            "refuse_names": args.refuse_names,
            "delivery_marks": not args.without_delivery_marks,
        }
        if args.database == "postgresql":
            if importlib.util.find_spec("psycopg") is None:
                print("SKIPPED postgresql: psycopg is not installed (pip install 'psycopg[binary]')")
                return 0
            try:
                cluster = postgresql_cluster(work_dir)
                pg = cluster.__enter__()
            except (FileNotFoundError, subprocess.CalledProcessError) as exc:
                print(f"SKIPPED postgresql: cannot start a private PostgreSQL server ({exc})")
                return 0
            try:
                report = run("postgresql", work_dir=work_dir, pg=pg, **sizes)
            finally:
                cluster.__exit__(None, None, None)
        else:
            report = run("sqlite", work_dir=work_dir, **sizes)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}))
    else:
        for key, value in asdict(report).items():
            print(f"{key:22} {value}")
        print(f"{'ok':22} {report.ok}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
