"""The ``im-task`` command: run a local queue worker and inspect the local queue.

Examples::

    im-task worker --target http://127.0.0.1:8000
    im-task worker --target http://127.0.0.1:8000 --until-empty
    im-task queue list --state failed
    im-task queue stats
    im-task queue show send-1
    im-task queue retry send-1
    im-task queue retry --state gave-up --queue emails
    im-task queue purge --queue emails --yes
    im-task sweep --setup myapp.settings --older-than 60
    im-task dead list
    im-task dead replay send-1 --queue emails

Exit codes: 0 success, 1 failure (e.g. no queue database), 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TextIO
from urllib.parse import urlsplit

from im_task.cli_common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    clip,
    non_negative_float,
    positive_float,
    positive_int,
    print_table,
    usage,
)
from im_task.cli_dead import add_dead_commands
from im_task.config import get_settings
from im_task.dead import describe, store_in_force
from im_task.deadletter import DeadLetter, DeadLetterStore
from im_task.errors import ConfigurationError, Error
from im_task.logfallback import FallbackHandler
from im_task.names import QUEUE_FILE
from im_task.reruns import rerun_headers
from im_task.state import STATE
from im_task.transports.local import LocalTransport, TaskInfo, TaskState
from im_task.transports.local.models import FINISHED_STATES, STATES, QueueStats, TaskDetail

__all__ = ["main"]


class CommandError(Exception):
    """A failure to report as ``im-task: error: ...`` with a non-zero exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def main(argv: Sequence[str] | None = None, *, worker_prog: str | None = None) -> int:
    """Runs the ``im-task`` command.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when None.
        worker_prog: The name ``worker``'s usage and help give the command (``"im-task worker"`` when None),
            for a command that runs the worker under another name, such as ``manage.py im_task_worker``.

    Returns:
        The exit code: 0 on success, 1 on failure, 2 for bad usage.

    Raises:
        ValueError: ``worker_prog`` is empty or not a string.
    """
    if worker_prog is not None and (not isinstance(worker_prog, str) or not worker_prog.strip()):
        raise ValueError(f"worker_prog must be a command name such as 'manage.py im_task_worker', not {worker_prog!r}")
    _import_from_the_current_directory()
    parser = _parser(worker_prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and bad usage (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if getattr(args, "read_only", False):
        # Reading the queue signs nothing: the development-secret warning is for the commands that enqueue or run.
        STATE.first_warning("local-secret")
    with _logging_to_stderr(logging.INFO if getattr(args, "verbose", False) else logging.WARNING):
        return _run(args)


@contextmanager
def _logging_to_stderr(level: int) -> Iterator[None]:
    """Within the block, im-task's log records of ``level`` and above go to stderr, unless the app logs them itself.

    When the process configured logging (a Django project's ``LOGGING``, a
    ``--setup`` module calling ``logging.basicConfig``), its handlers print
    them and this one stays silent, so that no line is printed twice.
    """
    handler = FallbackHandler(level=level)
    root = logging.getLogger("im_task")
    previous = root.level
    if root.getEffectiveLevel() > level:
        root.setLevel(level)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def _run(args: argparse.Namespace) -> int:
    """Runs the command's handler, turning its failures into an ``im-task: error:`` line and an exit code."""
    try:
        code: int = args.handler(args)
    except CommandError as exc:
        print(f"im-task: error: {exc}", file=sys.stderr)
        return exc.code
    except Error as exc:  # a damaged or unreadable queue file, a closed queue: said plainly, no traceback
        print(f"im-task: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `im-task queue list | head`: the reader has all it wants
        _silence_stdout()
        return EXIT_OK
    return code


def _import_from_the_current_directory() -> None:
    """Puts the current directory first on ``sys.path``, as ``python -m`` does, for the app's tasks and ``--setup``.

    The ``im-task`` script's own directory is first instead, so a task's
    function (``queue show``) or a ``--setup`` module of the project run from
    would not import.
    """
    here = os.getcwd()
    if not any(entry in ("", ".", here) for entry in sys.path):
        sys.path.insert(0, here)


def _import_setup(args: argparse.Namespace) -> None:
    """Imports the ``--setup`` module, which configures im-task (``configure()``) as the app does."""
    module = getattr(args, "setup", None)
    if not module:
        return
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise CommandError(
            f"cannot import --setup {module}: {exc}. Give the module that configures your app, as you would "
            "import it, and run from your project's directory (it is put on sys.path)."
        ) from exc


def _silence_stdout() -> None:
    """Points stdout at /dev/null, so that flushing it at exit does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file (captured in tests): nothing to flush at exit
        pass


# -- argument parsing ------------------------------------------------------


def _parser(worker_prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="im-task",
        description="Tools for im-task's embedded local queue (a SQLite file that delivers tasks like Cloud Tasks).",
        epilog="Run 'im-task COMMAND --help' for the options of a command.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    worker = commands.add_parser(
        "worker",
        prog=worker_prog,  # None: argparse's "im-task worker"
        help="deliver the local queue's tasks to a running app over HTTP",
        description=(
            "Deliver the tasks of the local queue database to a web app over HTTP, as Cloud Tasks would: "
            "with the X-AppEngine-* task headers, retries with exponential backoff, a dispatch deadline. "
            "Several workers (and apps using the local queue) may share one database: each task is delivered "
            "by one of them. Stop with Ctrl-C or SIGTERM: deliveries in flight finish first."
        ),
    )
    worker.add_argument(
        "--target",
        required=True,
        metavar="URL",
        help="base URL of the app, e.g. http://127.0.0.1:8000; each task's path is appended to it",
    )
    _add_db(worker)
    worker.add_argument(
        "--concurrency", type=positive_int, default=8, metavar="N", help="deliveries in flight at once (default: 8)"
    )
    worker.add_argument(
        "--until-empty",
        "--once",
        action="store_true",
        help="exit when no task is due or being delivered (tasks scheduled later stay queued)",
    )
    worker.add_argument(
        "--wait-scheduled",
        action="store_true",
        help="with --until-empty: also wait for tasks scheduled later or waiting to be retried",
    )
    worker.add_argument(
        "--dispatch-deadline",
        type=positive_float,
        default=600.0,
        metavar="SECONDS",
        help="how long to wait for an answer to a task that sets no deadline of its own (default: 600)",
    )
    worker.add_argument(
        "--interval",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="seconds between progress lines (default: 0.5 on a terminal, where one line is updated; else 10)",
    )
    worker.add_argument(
        "--lease",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help=(
            "how long a task being delivered stays leased to this worker without renewal; it is renewed every "
            "third of it, and a killed worker's tasks are delivered again after it (default: 30)"
        ),
    )
    _add_setup(worker)
    worker.add_argument("--quiet", "-q", action="store_true", help="print only the final summary")
    worker.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also log each retry and what the queue does at INFO (warnings and errors are always logged)",
    )
    worker.set_defaults(handler=_worker)

    queue = commands.add_parser(
        "queue",
        help="inspect or empty the local queue",
        description="Inspect or empty the local queue database.",
    )
    queue_commands = queue.add_subparsers(title="queue commands", metavar="QUEUE_COMMAND")
    queue.set_defaults(handler=lambda args: usage(queue))

    listing = queue_commands.add_parser(
        "list",
        help="list tasks as a table",
        description=(
            "List tasks: running first, then queued ones by due time, then failed and done ones, latest first."
        ),
    )
    _add_db(listing)
    listing.add_argument("--queue", metavar="Q", help="only tasks of this queue")
    listing.add_argument("--state", choices=STATES, help="only tasks in this state")
    listing.add_argument("--limit", type=positive_int, default=50, metavar="N", help="most tasks to list (default: 50)")
    listing.add_argument("--json", action="store_true", help="print one JSON object per task instead of a table")
    _add_setup(listing)
    listing.set_defaults(handler=_list, read_only=True)

    stats = queue_commands.add_parser(
        "stats", help="count tasks by state", description="Count the tasks of the local queue by state."
    )
    _add_db(stats)
    stats.add_argument("--queue", metavar="Q", help="only tasks of this queue")
    stats.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    _add_setup(stats)
    stats.set_defaults(handler=_stats, read_only=True)

    _add_show_and_retry(queue_commands)

    purge = queue_commands.add_parser(
        "purge",
        help="delete queued tasks (needs --yes)",
        description=(
            "Delete tasks from the local queue: by default the queued ones (waiting or to be retried). "
            "Tasks being delivered are never deleted. Their names can be used again at once."
        ),
    )
    _add_db(purge)
    purge.add_argument("--queue", metavar="Q", help="only tasks of this queue (default: every queue)")
    purge.add_argument(
        "--state",
        choices=(*(s for s in STATES if s != "running"), "all"),
        default="queued",
        help="which tasks to delete (default: queued); 'all' is every task not being delivered",
    )
    purge.add_argument("--yes", "-y", action="store_true", help="really delete them")
    _add_setup(purge)
    purge.set_defaults(handler=_purge)

    add_dead_commands(commands)

    sweeper = commands.add_parser(
        "sweep",
        help="re-send transactional tasks committed but not sent (for cron)",
        description=(
            "Sweep the outbox of transactional tasks: send those whose send after commit did not happen (the "
            "process died, the queue could not be reached) and delete the rows marked sent. Import your app's "
            "set-up with --setup (it configures im-task and installs the outbox), or sweep an ndb outbox kind "
            "with --ndb. Prints the counts as JSON."
        ),
    )
    sweeper.add_argument(
        "--setup", metavar="MODULE", help="module to import first, e.g. myapp.settings (configure(), install_outbox())"
    )
    sweeper.add_argument(
        "--ndb",
        nargs="?",
        const="_ImTaskOutbox",
        default=None,
        metavar="KIND",
        help="sweep the google-cloud-ndb outbox of this kind (default kind: _ImTaskOutbox)",
    )
    sweeper.add_argument(
        "--older-than",
        type=non_negative_float,
        default=60.0,
        metavar="SECONDS",
        help="only rows whose send's claim ended at least this long ago (default: 60)",
    )
    sweeper.add_argument("--limit", type=positive_int, default=None, metavar="N", help="most rows per outbox")
    sweeper.add_argument(
        "--payloads",
        type=non_negative_float,
        default=None,
        metavar="SECONDS",
        help="also delete stored payloads older than this (orphans of tasks that never ran)",
    )
    sweeper.set_defaults(handler=_sweep)
    return parser


def _add_show_and_retry(queue_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    show = queue_commands.add_parser(
        "show",
        help="print one task: its function, arguments, attempts and last error",
        description=(
            "Print a task of the local queue: its state, the function it calls and its arguments (decoded only "
            "once the body's signature verified with the secrets in force; a safe, shortened repr), its attempts, "
            "the last status and the last error in full (a traceback, or what the app answered). A done task's "
            "body is not kept."
        ),
    )
    _add_db(show)
    show.add_argument("name", help="the task's name, or the start of it that only one task's name has")
    show.add_argument("--queue", metavar="Q", help="the task's queue (default: the task of that name in any queue)")
    _add_setup(show)
    show.set_defaults(handler=_show, read_only=True)

    retry = queue_commands.add_parser(
        "retry",
        help="queue tasks that failed, gave up or were dropped again",
        description=(
            "Queue again, due now and with their attempts counted afresh, the task NAME, or every task in the "
            f"--state given ({', '.join(s for s in FINISHED_STATES if s != 'done')}). Fix the cause first."
        ),
    )
    _add_db(retry)
    retry.add_argument("name", nargs="?", help="the task's name, or the start of it that only one task's name has")
    retry.add_argument("--queue", metavar="Q", help="only tasks of this queue")
    retry.add_argument(
        "--state",
        choices=[s for s in FINISHED_STATES if s != "done"],
        help="every task in this state (with NAME: only if it is in this state)",
    )
    _add_setup(retry)
    retry.set_defaults(handler=_retry)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"the queue's SQLite file (default: {QUEUE_FILE} in the data directory, $IM_TASK_DATA_DIR or .im_task)",
    )


def _add_setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--setup",
        metavar="MODULE",
        help=(
            "module to import first, e.g. myapp.settings: it configures im-task as your app does (secrets, data "
            "directory) and makes the tasks' functions importable"
        ),
    )


def _sweep(args: argparse.Namespace) -> int:
    from im_task.stores.base import get_payload_store
    from im_task.sweeping import sweep_outbox

    _import_setup(args)
    storage = None
    if args.ndb is not None:
        try:
            from im_task.ndb import NdbOutboxStorage
        except ImportError as exc:
            raise CommandError(f"--ndb needs google-cloud-ndb (pip install 'im-task[gcp]'): {exc}") from exc
        try:
            storage = NdbOutboxStorage(kind=args.ndb)
        except ConfigurationError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from exc
    try:
        result = sweep_outbox(args.older_than, limit=args.limit, storage=storage)
        counts: dict[str, int] = {k: int(v) for k, v in vars(result).items()}
        if args.payloads is not None:
            counts["payloads_deleted"] = get_payload_store().sweep(args.payloads)
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from exc
    print(json.dumps(counts, sort_keys=True))
    return EXIT_FAILURE if counts.get("failed") else EXIT_OK


def _db_path(args: argparse.Namespace, *, must_exist: bool) -> Path:
    path: Path | None = args.db
    if path is None:
        path = get_settings().data_dir / QUEUE_FILE
    if must_exist and not path.exists():
        raise CommandError(
            f"no queue database at {path}. Give its path with --db, or run from the directory of your app "
            f"(the default is {QUEUE_FILE} in $IM_TASK_DATA_DIR or .im_task)."
        )
    return path


def _open(
    path: Path,
    *,
    target: str | None = None,
    concurrency: int = 8,
    dispatch_deadline: float = 600.0,
    lease: float = 30.0,
) -> LocalTransport:
    try:
        return LocalTransport(
            path,
            target=target,
            autostart=False,
            concurrency=concurrency,
            dispatch_deadline=dispatch_deadline,
            lease_duration=lease,
            dead_letters=_dead_letters() if target is not None else None,
        )
    except ConfigurationError as exc:
        raise CommandError(str(exc), EXIT_USAGE if "target" in str(exc).lower() else EXIT_FAILURE) from exc


def _dead_letters() -> DeadLetterStore | None:
    """The dead-letter store in force, where the worker records the tasks it gives up on; None if there is none."""
    try:
        return store_in_force()
    except Error:
        return None


# -- worker ----------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    if args.wait_scheduled and not args.until_empty:
        raise CommandError("--wait-scheduled only makes sense with --until-empty", EXIT_USAGE)
    _import_setup(args)
    target = urlsplit(args.target)
    if target.scheme not in ("http", "https") or not target.hostname:
        raise CommandError(
            f"--target must be the app's base URL, like http://127.0.0.1:8000, not {args.target!r}.", EXIT_USAGE
        )
    path = _db_path(args, must_exist=False)
    transport = _open(
        path,
        target=args.target,
        concurrency=args.concurrency,
        dispatch_deadline=args.dispatch_deadline,
        lease=args.lease,
    )
    out = sys.stderr
    stop = threading.Event()
    signals = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            print("\nim-task worker: stopping now; tasks in flight will be delivered again later.", file=out)
            os._exit(130)
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main_thread else {}
    started = time.monotonic()
    if not args.quiet:
        print(
            f"im-task worker: delivering tasks from {path} to {args.target} "
            f"({args.concurrency} at a time). Ctrl-C to stop.",
            file=out,
            flush=True,
        )
    try:
        transport.start()
        _watch(transport, args, stop, out)
        if stop.is_set() and not args.quiet:
            print("im-task worker: stopping; waiting for deliveries in flight...", file=out, flush=True)
        transport.stop()
        stats = transport.stats()
    finally:
        transport.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    elapsed = time.monotonic() - started
    print(f"im-task worker: {_summary(stats)} in {elapsed:.1f} s; {stats.queued} still queued.", flush=True)
    return EXIT_OK


def _summary(stats: QueueStats) -> str:
    """What the worker's deliveries came to: tasks by the state they ended in, then the retried attempts apart."""
    ended = ", ".join(f"{stats.ended.get(state, 0)} {state}" for state in FINISHED_STATES if state != "done")
    retried = f"{stats.retried} attempt{'' if stats.retried == 1 else 's'} retried"
    return f"{stats.delivered} done, {ended} ({retried})"


def _watch(transport: LocalTransport, args: argparse.Namespace, stop: threading.Event, out: TextIO) -> None:
    """Shows progress until stopped, or until the queue is empty with ``--until-empty``."""
    tty = out.isatty()
    interval = args.interval or (0.5 if tty else 10.0)
    last_line, last_print = "", time.monotonic()
    while not stop.is_set():
        if args.until_empty and transport.join(0, scheduled=args.wait_scheduled):
            break
        stop.wait(min(interval, 0.1) if args.until_empty else interval)
        if args.quiet:
            continue
        line = _progress(transport)
        now = time.monotonic()
        if tty:
            print(f"\r\x1b[2K{line}", end="", file=out, flush=True)
        elif line != last_line and now - last_print >= interval:
            print(line, file=out, flush=True)
            last_line, last_print = line, now
    if tty and not args.quiet:
        print(file=out)


def _progress(transport: LocalTransport) -> str:
    s = transport.stats()
    return f"{_summary(s)} | queued {s.queued} (due {s.due}), running {s.running}"


# -- queue -----------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    _import_setup(args)
    with _open(_db_path(args, must_exist=True)) as transport:
        tasks = transport.tasks(state=args.state, queue=args.queue, limit=args.limit)
    if args.json:
        for task in tasks:
            print(
                json.dumps(
                    {
                        "name": task.name,
                        "queue": task.queue,
                        "state": task.state,
                        "attempts": task.attempts,
                        "executions": task.executions,
                        "eta": task.eta.isoformat(),
                        "due": task.due.isoformat(),
                        "created": task.created.isoformat(),
                        "finished": task.finished.isoformat() if task.finished else None,
                        "url": task.url,
                        "last_status": task.last_status,
                        "last_error": task.last_error,
                        "outcome": task.outcome,
                    }
                )
            )
        return EXIT_OK
    if not tasks:
        print("No tasks.")
        return EXIT_OK
    now = dt.datetime.now(dt.timezone.utc)
    rows = [  # the name in full, to copy into `queue show` (and in dead list's order: QUEUE, NAME)
        [
            t.queue,
            t.name,
            t.state,
            str(t.attempts),
            _when(t, now),
            clip(t.url, 48),
            _last(t.last_status, t.last_error),
        ]
        for t in tasks
    ]
    print_table(["QUEUE", "NAME", "STATE", "ATTEMPTS", "DUE", "URL", "LAST"], rows, sys.stdout)
    return EXIT_OK


def _stats(args: argparse.Namespace) -> int:
    _import_setup(args)
    with _open(_db_path(args, must_exist=True)) as transport:
        s = transport.stats(queue=args.queue)
    if args.json:
        counts = {state: getattr(s, state.replace("-", "_")) for state in STATES}
        print(json.dumps({"queue": args.queue, "due": s.due, **counts}))
        return EXIT_OK
    scope = f"queue {args.queue}" if args.queue else "all queues"
    print(
        f"{scope}: queued {s.queued} (due now {s.due}), running {s.running}, done {s.done}, "
        f"failed {s.failed}, gave-up {s.gave_up}, dropped {s.dropped}"
    )
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    _import_setup(args)
    path = _db_path(args, must_exist=True)
    with _open(path) as transport:
        found = _find(transport, args.name, args.queue, path)
    if len(found) > 1:
        queues = ", ".join(d.info.queue for d in found)
        raise CommandError(f"tasks named {args.name!r} are in several queues ({queues}); give one with --queue.")
    [detail] = found
    for label, value in _described(detail):
        print(f"{label + ':':<13}{value}")
    if detail.error_detail:
        print("last error:")
        print(detail.error_detail.rstrip())
    return EXIT_OK


#: Most tasks ``queue show`` and ``queue retry`` look through for the names that start as the one given.
_PREFIX_SCAN = 100_000


def _find(transport: LocalTransport, name: str, queue: str | None, path: Path) -> list[TaskDetail]:
    """The tasks named ``name`` (one per queue), or the one task whose name starts with it.

    Raises:
        CommandError: No task has that name or a name starting with it, or several names start with it.
    """
    found = transport.task(name, queue=queue)
    if found:
        return found
    where = f" in queue {queue!r}" if queue else ""
    names = sorted({t.name for t in transport.tasks(queue=queue, limit=_PREFIX_SCAN) if t.name.startswith(name)})
    if len(names) == 1:
        return transport.task(names[0], queue=queue)
    if names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise CommandError(f"{len(names)} tasks{where} have a name starting with {name!r} ({shown}); give more of it.")
    raise CommandError(
        f"no task named {name!r} (nor starting so){where} in {path}. Either it was purged or retried under another "
        "name; or it was done more than the queue's name retention ago (an hour by default), and forgotten; or it "
        "is in another queue file: give that with --db, or run from your app's directory with the same "
        "$IM_TASK_DATA_DIR. `im-task queue list` lists the tasks in this one."
    )


def _described(detail: TaskDetail) -> list[tuple[str, str]]:
    """The lines of ``queue show``, as (label, value)."""
    t = detail.info
    now = dt.datetime.now(dt.timezone.utc)
    lines = [
        ("name", t.name),
        ("queue", t.queue),
        ("url", t.url),
        ("state", t.state + _state_note(t, now)),
        ("attempts", _attempts(t)),
        ("created", t.created.isoformat(timespec="seconds")),
    ]
    if t.state == "done" or not detail.body:
        lines.append(("function", "(the body is not kept once a task is done)"))
    else:
        function, arguments = _call_of(detail)
        lines.append(("function", function))
        if arguments:
            lines.append(("arguments", arguments))
    if t.last_status is not None or t.last_error is not None:
        lines.append(("last status", _last(t.last_status, t.last_error) if t.last_error else str(t.last_status)))
    if t.outcome:
        lines.append(("outcome", t.outcome))
    return lines


def _attempts(task: TaskInfo) -> str:
    """The attempts started, and how many reached the app's code (executions, in Cloud Tasks' words)."""
    if task.attempts == 0:
        return "0 (not delivered yet)"
    failed = task.attempts - task.executions
    if not failed:
        return f"{task.attempts} (each answered by the app)"
    return (
        f"{task.attempts} ({task.executions} answered by the app, {failed} got no answer or a 5xx: "
        "a crash, a timeout, the app unreachable)"
    )


def _state_note(task: TaskInfo, now: dt.datetime) -> str:
    if task.state == "queued":
        return f" (due {_when(task, now)})"
    if task.finished is not None:
        return f" (since {_duration((now - task.finished).total_seconds())} ago)"
    return ""


def _call_of(detail: TaskDetail) -> tuple[str, str]:
    """The function a task calls and its arguments, decoded only after its signature verified."""
    t = detail.info
    # describe() reads only the body (and the secrets in force); the rest just makes a valid letter.
    letter = DeadLetter(t.name, t.queue, t.url, detail.body, "failed", t.attempts, "", detail.headers)
    described = describe(letter)
    if described.note:
        return f"({described.note})", ""
    return described.function, described.arguments


def _retry(args: argparse.Namespace) -> int:
    if args.name is None and args.state is None:
        raise CommandError("give the task's NAME, or --state to retry every task in a state.", EXIT_USAGE)
    _import_setup(args)
    states: tuple[TaskState, ...] = (args.state,) if args.state else ()
    path = _db_path(args, must_exist=True)
    name = args.name
    with _open(path) as transport:
        if name is not None:
            name = _find(transport, name, args.queue, path)[0].info.name
        count = transport.retry(name, queue=args.queue, states=states, headers=_rerun_mark())
    if name is not None and not count:
        raise CommandError(
            f"task {name!r} cannot be retried: only failed, gave-up and dropped tasks can "
            f"(see `im-task queue show {name}`)."
        )
    print(f"Queued {count} task(s) again.")
    return EXIT_OK


def _rerun_mark() -> dict[str, str]:
    """The signed mark telling the endpoint the tasks were asked for again (im_task.reruns); {} without a secret."""
    try:
        return rerun_headers()
    except ConfigurationError as exc:
        print(f"im-task: warning: the tasks go without the mark of a re-run ({exc}).", file=sys.stderr)
        return {}


def _purge(args: argparse.Namespace) -> int:
    _import_setup(args)
    states: tuple[TaskState, ...] = tuple(s for s in STATES if s != "running") if args.state == "all" else (args.state,)
    with _open(_db_path(args, must_exist=True)) as transport:
        stats = transport.stats(queue=args.queue)
        count = sum(getattr(stats, s.replace("-", "_")) for s in states)
        scope = f"queue {args.queue!r}" if args.queue else "every queue"
        what = f"{count} {args.state if args.state != 'all' else 'finished or queued'} task(s) of {scope}"
        if not args.yes:
            raise CommandError(f"refusing to delete {what} without --yes (nothing was deleted).", EXIT_USAGE)
        deleted = transport.purge(queue=args.queue, states=states)
        if deleted:
            transport.compact()  # give the room back to the disk when much of the file is now free
    print(f"Deleted {deleted} task(s).")
    return EXIT_OK


# -- formatting ------------------------------------------------------------


def _duration(seconds: float) -> str:
    total = round(abs(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def _when(task: TaskInfo, now: dt.datetime) -> str:
    if task.state == "running":
        return "running"
    if task.state == "queued":
        delta = (task.due - now).total_seconds()
        return "now" if delta <= 0.5 else f"in {_duration(delta)}"
    if task.finished is not None:
        return f"{task.state} {_duration((now - task.finished).total_seconds())} ago"
    return "-"


def _last(status: int | None, error: str | None) -> str:
    if status is None and error is None:
        return "-"
    if error is None:
        return str(status)
    return clip(error, 40)


if __name__ == "__main__":
    sys.exit(main())
