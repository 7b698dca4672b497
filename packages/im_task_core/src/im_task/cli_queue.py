"""``im-task queue``: list, count, show, retry and purge the tasks of the local queue.

Examples::

    im-task queue list --state failed
    im-task queue stats
    im-task queue show send-1
    im-task queue retry send-1
    im-task queue retry --state gave-up --queue emails
    im-task queue purge --queue emails --yes
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from im_task.cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_setup_option,
    clip,
    import_setup,
    positive_int,
    print_table,
    usage,
)
from im_task.cli_local import add_db_option, db_path, open_queue
from im_task.dead import describe
from im_task.deadletter import DeadLetter
from im_task.errors import ConfigurationError
from im_task.reruns import rerun_headers
from im_task.transports.local import LocalTransport, TaskInfo, TaskState
from im_task.transports.local.models import FINISHED_STATES, STATES, TaskDetail

__all__ = ["add_queue_commands"]


def add_queue_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``im-task queue`` and its commands (list, stats, show, retry, purge) to the ``im-task`` parser.

    Args:
        commands: The ``im-task`` parser's subparsers.
    """
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
    add_db_option(listing)
    listing.add_argument("--queue", metavar="Q", help="only tasks of this queue")
    listing.add_argument("--state", choices=STATES, help="only tasks in this state")
    listing.add_argument("--limit", type=positive_int, default=50, metavar="N", help="most tasks to list (default: 50)")
    listing.add_argument("--json", action="store_true", help="print one JSON object per task instead of a table")
    add_setup_option(listing)
    listing.set_defaults(handler=_list, read_only=True)

    stats = queue_commands.add_parser(
        "stats", help="count tasks by state", description="Count the tasks of the local queue by state."
    )
    add_db_option(stats)
    stats.add_argument("--queue", metavar="Q", help="only tasks of this queue")
    stats.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    add_setup_option(stats)
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
    add_db_option(purge)
    purge.add_argument("--queue", metavar="Q", help="only tasks of this queue (default: every queue)")
    purge.add_argument(
        "--state",
        choices=(*(s for s in STATES if s != "running"), "all"),
        default="queued",
        help="which tasks to delete (default: queued); 'all' is every task not being delivered",
    )
    purge.add_argument("--yes", "-y", action="store_true", help="really delete them")
    add_setup_option(purge)
    purge.set_defaults(handler=_purge)


def _add_show_and_retry(queue_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``queue show`` and ``queue retry``, which find a task by its name or the start of it."""
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
    add_db_option(show)
    show.add_argument("name", help="the task's name, or the start of it that only one task's name has")
    show.add_argument("--queue", metavar="Q", help="the task's queue (default: the task of that name in any queue)")
    add_setup_option(show)
    show.set_defaults(handler=_show, read_only=True)

    retry = queue_commands.add_parser(
        "retry",
        help="queue tasks that failed, gave up or were dropped again",
        description=(
            "Queue again, due now and with their attempts counted afresh, the task NAME, or every task in the "
            f"--state given ({', '.join(s for s in FINISHED_STATES if s != 'done')}). Fix the cause first."
        ),
    )
    add_db_option(retry)
    retry.add_argument("name", nargs="?", help="the task's name, or the start of it that only one task's name has")
    retry.add_argument("--queue", metavar="Q", help="only tasks of this queue")
    retry.add_argument(
        "--state",
        choices=[s for s in FINISHED_STATES if s != "done"],
        help="every task in this state (with NAME: only if it is in this state)",
    )
    add_setup_option(retry)
    retry.set_defaults(handler=_retry)


# -- commands --------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    import_setup(args)
    with open_queue(db_path(args, must_exist=True)) as transport:
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
    import_setup(args)
    with open_queue(db_path(args, must_exist=True)) as transport:
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
    import_setup(args)
    path = db_path(args, must_exist=True)
    with open_queue(path) as transport:
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
    import_setup(args)
    states: tuple[TaskState, ...] = (args.state,) if args.state else ()
    path = db_path(args, must_exist=True)
    name = args.name
    with open_queue(path) as transport:
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
    import_setup(args)
    states: tuple[TaskState, ...] = tuple(s for s in STATES if s != "running") if args.state == "all" else (args.state,)
    with open_queue(db_path(args, must_exist=True)) as transport:
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
