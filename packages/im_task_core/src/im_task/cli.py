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

This module parses the command line and runs a command; the ``worker``,
``queue`` and ``dead`` commands are in :mod:`im_task.cli_worker`,
:mod:`im_task.cli_queue` and :mod:`im_task.cli_dead`, ``sweep`` is here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from im_task.cli_common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    import_setup,
    non_negative_float,
    positive_int,
)
from im_task.cli_dead import add_dead_commands
from im_task.cli_queue import add_queue_commands
from im_task.cli_worker import add_worker_command
from im_task.errors import ConfigurationError, Error
from im_task.logfallback import FallbackHandler
from im_task.state import STATE

__all__ = ["CommandError", "main"]


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
    """The ``im-task`` parser: ``worker``, ``queue``, ``dead`` and ``sweep``; ``worker_prog`` names the worker."""
    parser = argparse.ArgumentParser(
        prog="im-task",
        description="Tools for im-task's embedded local queue (a SQLite file that delivers tasks like Cloud Tasks).",
        epilog="Run 'im-task COMMAND --help' for the options of a command.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    add_worker_command(commands, worker_prog)
    add_queue_commands(commands)
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


def _sweep(args: argparse.Namespace) -> int:
    from im_task.stores.base import get_payload_store
    from im_task.sweeping import sweep_outbox

    import_setup(args)
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


if __name__ == "__main__":
    sys.exit(main())
