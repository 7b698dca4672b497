"""``im-task worker``: deliver the local queue's tasks to a running app over HTTP, showing progress.

Examples::

    im-task worker --target http://127.0.0.1:8000
    im-task worker --target http://127.0.0.1:8000 --until-empty
    im-task worker --target http://127.0.0.1:8000 --until-empty --wait-scheduled --db /tmp/queue.sqlite3
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import TextIO
from urllib.parse import urlsplit

from im_task.cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_setup_option,
    import_setup,
    positive_float,
    positive_int,
)
from im_task.cli_local import add_db_option, db_path, open_queue
from im_task.transports.local import LocalTransport
from im_task.transports.local.models import FINISHED_STATES, QueueStats

__all__ = ["add_worker_command"]


def add_worker_command(commands: argparse._SubParsersAction[argparse.ArgumentParser], prog: str | None = None) -> None:
    """Adds ``im-task worker`` to the ``im-task`` parser.

    Args:
        commands: The ``im-task`` parser's subparsers.
        prog: The name the worker's usage and help give the command, such as ``manage.py im_task_worker``;
            None for argparse's ``im-task worker``.
    """
    worker = commands.add_parser(
        "worker",
        prog=prog,  # None: argparse's "im-task worker"
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
    add_db_option(worker)
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
    add_setup_option(worker)
    worker.add_argument("--quiet", "-q", action="store_true", help="print only the final summary")
    worker.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also log each retry and what the queue does at INFO (warnings and errors are always logged)",
    )
    worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    if args.wait_scheduled and not args.until_empty:
        raise CommandError("--wait-scheduled only makes sense with --until-empty", EXIT_USAGE)
    import_setup(args)
    target = urlsplit(args.target)
    if target.scheme not in ("http", "https") or not target.hostname:
        raise CommandError(
            f"--target must be the app's base URL, like http://127.0.0.1:8000, not {args.target!r}.", EXIT_USAGE
        )
    path = db_path(args, must_exist=False)
    transport = open_queue(
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
