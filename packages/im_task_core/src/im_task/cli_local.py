"""The local queue's file, as ``im-task queue`` and ``im-task worker`` find and open it (``--db``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from im_task.cli_common import EXIT_FAILURE, EXIT_USAGE, CommandError
from im_task.config import get_settings
from im_task.dead import store_in_force
from im_task.deadletter import DeadLetterStore
from im_task.errors import ConfigurationError, Error
from im_task.names import QUEUE_FILE
from im_task.transports.local import LocalTransport

__all__ = ["add_db_option", "db_path", "open_queue"]


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """Adds ``--db PATH``, the queue's SQLite file, to a command; :func:`db_path` reads it.

    Args:
        parser: The command's parser.
    """
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"the queue's SQLite file (default: {QUEUE_FILE} in the data directory, $IM_TASK_DATA_DIR or .im_task)",
    )


def db_path(args: argparse.Namespace, *, must_exist: bool) -> Path:
    """The queue's file: ``--db``, else the one in the data directory of the settings in force.

    Args:
        args: The parsed arguments, with ``db`` (see :func:`add_db_option`).
        must_exist: Whether a missing file is an error (reading the queue), or is created on opening (the worker).

    Returns:
        The file's path.

    Raises:
        CommandError: ``must_exist`` and there is no file there; the message says how to name it.
    """
    path: Path | None = args.db
    if path is None:
        path = get_settings().data_dir / QUEUE_FILE
    if must_exist and not path.exists():
        raise CommandError(
            f"no queue database at {path}. Give its path with --db, or run from the directory of your app "
            f"(the default is {QUEUE_FILE} in $IM_TASK_DATA_DIR or .im_task)."
        )
    return path


def open_queue(
    path: Path,
    *,
    target: str | None = None,
    concurrency: int = 8,
    dispatch_deadline: float = 600.0,
    lease: float = 30.0,
) -> LocalTransport:
    """Opens the local queue at ``path``, without starting its delivery threads.

    Args:
        path: The queue's file (see :func:`db_path`).
        target: The app's base URL, for a worker that delivers the tasks; None to only read or change the queue.
        concurrency: Deliveries in flight at once.
        dispatch_deadline: Seconds to wait for an answer to a task that sets no deadline of its own.
        lease: Seconds a task being delivered stays leased to this worker without renewal.

    Returns:
        The queue; a worker (``target`` given) records the tasks it gives up on in the dead-letter store in force.

    Raises:
        CommandError: The queue cannot be opened with these values (a bad ``target`` is a usage error).
    """
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
