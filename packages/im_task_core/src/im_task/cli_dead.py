"""``im-task dead``: list, show, replay and purge dead letters, in the store in force (local or Datastore).

Examples::

    im-task dead list
    im-task dead show send-1 --queue emails
    im-task dead replay send-1 --queue emails
    im-task dead replay --all --queue emails
    im-task dead purge --queue emails --yes

The store is the one the settings name (``dead_letter_store``; by default
the payload store's kind): set ``IM_TASK_*`` environment variables, or give
``--setup MODULE`` to import the module that configures your app.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from im_task.cli_common import (
    EXIT_FAILURE,
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
from im_task.dead import DeadLetterError, describe, find_letter, purge, replay, store_in_force
from im_task.deadletter import DeadLetter, DeadLetterStore
from im_task.errors import ConfigurationError, EnqueueError

__all__ = ["add_dead_commands"]


def add_dead_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``im-task dead`` and its commands to the ``im-task`` parser.

    Args:
        commands: The ``im-task`` parser's subparsers.
    """
    dead = commands.add_parser(
        "dead",
        help="list, show, replay or purge dead letters (tasks that failed permanently, gave up or were dropped)",
        description=(
            "Dead letters are the tasks that failed permanently, gave up or were dropped, kept with their signed "
            "body and last error in the dead-letter store in force (dead_letter_store: a SQLite file in the data "
            "directory, or Datastore on Google Cloud)."
        ),
    )
    dead.set_defaults(handler=lambda args: usage(dead))
    sub = dead.add_subparsers(title="dead commands", metavar="DEAD_COMMAND")

    listing = sub.add_parser("list", help="list dead letters, newest first", description="List dead letters.")
    _common(listing)
    listing.add_argument("--queue", metavar="Q", help="only dead letters of this queue")
    listing.add_argument("--limit", type=positive_int, default=50, metavar="N", help="most to list (default: 50)")
    listing.add_argument("--json", action="store_true", help="print one JSON object per dead letter")
    listing.set_defaults(handler=_guarded(_list))

    show = sub.add_parser(
        "show",
        help="show a dead letter's call and last error",
        description=(
            "Show a dead letter: its function and arguments (decoded only after its signature verifies with the "
            "secrets in force; a safe, shortened repr), its attempts and its last error."
        ),
    )
    _common(show)
    show.add_argument("name", metavar="NAME", help="the task's name")
    show.add_argument("--queue", metavar="Q", help="its queue (needed when several queues hold that name)")
    show.set_defaults(handler=_guarded(_show))

    again = sub.add_parser(
        "replay",
        help="enqueue dead letters again through the configured transport",
        description=(
            "Enqueue dead letters again, under new names, through the transport in force (the local queue, Cloud "
            "Tasks...): the same signed body, URL, queue and task headers. Each letter is deleted once the queue "
            "accepted its task."
        ),
    )
    _common(again)
    again.add_argument("names", nargs="*", metavar="NAME", help="the tasks to replay")
    again.add_argument("--queue", metavar="Q", help="their queue; with --all, only this queue's")
    again.add_argument("--all", action="store_true", help="replay every dead letter (of --queue)")
    again.set_defaults(handler=_guarded(_replay))

    purging = sub.add_parser(
        "purge",
        help="forget dead letters (needs --yes)",
        description="Forget dead letters, of one queue or of all, and the stored payloads of those that had one.",
    )
    _common(purging)
    purging.add_argument("--queue", metavar="Q", help="only this queue's (default: every queue)")
    purging.add_argument("--yes", "-y", action="store_true", help="really forget them")
    purging.set_defaults(handler=_guarded(_purge))


def _common(parser: argparse.ArgumentParser) -> None:
    add_setup_option(parser)
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="a local dead-letter SQLite file (default: the store the settings name)",
    )


def _guarded(handler: Callable[[argparse.Namespace, DeadLetterStore], int]) -> Callable[[argparse.Namespace], int]:
    """Runs a command with its store, turning failures into ``im-task: error: ...`` and an exit code."""

    def run(args: argparse.Namespace) -> int:
        store: DeadLetterStore | None = None
        try:
            store = _store(args)
            return handler(args, store)
        except CommandError as exc:
            print(f"im-task: error: {exc}", file=sys.stderr)
            return exc.code
        except DeadLetterError as exc:
            print(f"im-task: error: {exc}{_searched(store, handler.__name__.lstrip('_'))}", file=sys.stderr)
            return EXIT_FAILURE
        except (ConfigurationError, EnqueueError, ValueError) as exc:
            print(f"im-task: error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except BrokenPipeError:  # `im-task dead list | head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_OK

    return run


def _searched(store: DeadLetterStore | None, command: str) -> str:
    """Which store was searched, and the Django command when this looks like a Django project using another store."""
    if store is None:
        return ""
    return f" (searched {store!r}){_django_hint(store, command)}"


def _django_hint(store: DeadLetterStore, command: str) -> str:
    """A pointer to ``manage.py im_task_dead`` when run in a Django project, with a store that is not its database."""
    if getattr(store, "name", None) == "django":
        return ""
    if not os.environ.get("DJANGO_SETTINGS_MODULE") and not Path("manage.py").is_file():
        return ""
    return (
        ". This looks like a Django project, whose dead letters are kept in its database: run "
        f"`python manage.py im_task_dead {command}` instead"
    )


def _store(args: argparse.Namespace) -> DeadLetterStore:
    import_setup(args)
    if args.db is not None:
        from im_task.stores.deadletters_local import LocalDeadLetterStore

        if not args.db.exists():
            raise CommandError(f"no dead-letter database at {args.db}.")
        return LocalDeadLetterStore(args.db)
    return store_in_force()


def _list(args: argparse.Namespace, store: DeadLetterStore) -> int:
    letters = list(store.list(args.queue, limit=args.limit))
    out = sys.stdout
    if args.json:
        for letter in letters:
            print(json.dumps(_as_json(letter)), file=out)
        return EXIT_OK
    if not letters:
        print(f"No dead letters in {store!r}{_django_hint(store, 'list')}.", file=out)
        return EXIT_OK
    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        [clip(x.queue, 16), x.name, x.outcome, str(x.attempts), _ago(now, x.recorded_at), clip(x.url, 48)]
        for x in letters
    ]
    print_table(["QUEUE", "NAME", "OUTCOME", "ATTEMPTS", "RECORDED", "URL"], rows, out)
    out.flush()
    return EXIT_OK


def _show(args: argparse.Namespace, store: DeadLetterStore) -> int:
    letter = find_letter(args.name, args.queue, store=store)
    about = describe(letter)
    lines = [
        f"name:        {letter.name}",
        f"queue:       {letter.queue}",
        f"url:         {letter.url}",
        f"outcome:     {letter.outcome}",
        f"attempts:    {letter.attempts}",
        f"recorded at: {letter.recorded_at.isoformat(timespec='seconds')}",
    ]
    if about.function:
        lines += [f"function:    {about.function}", f"arguments:   {about.arguments}"]
    else:
        lines.append(f"call:        {about.note}")
    if about.expires is not None:
        expires = dt.datetime.fromtimestamp(about.expires, dt.timezone.utc).isoformat(timespec="seconds")
        lines.append(f"expires:     {expires} (a replay after that is refused)")
    if letter.headers:
        lines.append(f"headers:     {json.dumps(letter.headers)}")
    lines += ["last error:", *("  " + line for line in letter.error.splitlines())]
    print("\n".join(lines))
    return EXIT_OK


def _replay(args: argparse.Namespace, store: DeadLetterStore) -> int:
    if args.all == bool(args.names):
        raise CommandError("give the names of the tasks to replay, or --all (with --queue for one queue's)", EXIT_USAGE)
    letters = (
        list(store.list(args.queue)) if args.all else [find_letter(n, args.queue, store=store) for n in args.names]
    )
    failed = 0
    for letter in letters:
        try:
            name = replay(letter, store=store)
        except (DeadLetterError, EnqueueError) as exc:
            failed += 1
            print(f"im-task: error: {exc}", file=sys.stderr)
            continue
        print(f"Replayed {letter.name} of queue {letter.queue} as {name or 'a new task'}.")
    if not letters:
        print("No dead letters.")
    return EXIT_FAILURE if failed else EXIT_OK


def _purge(args: argparse.Namespace, store: DeadLetterStore) -> int:
    scope = f"queue {args.queue!r}" if args.queue else "every queue"
    if not args.yes:
        count = sum(1 for _ in store.list(args.queue))
        refusal = f"refusing to forget {count} dead letter(s) of {scope} without --yes (nothing was deleted)."
        raise CommandError(refusal, EXIT_USAGE)
    print(f"Forgot {purge(args.queue, store=store)} dead letter(s) of {scope}.")
    return EXIT_OK


def _as_json(letter: DeadLetter) -> dict[str, object]:
    return {
        "queue": letter.queue,
        "name": letter.name,
        "url": letter.url,
        "outcome": letter.outcome,
        "attempts": letter.attempts,
        "recorded_at": letter.recorded_at.isoformat(),
        "headers": letter.headers,
        "error": letter.error,
    }


def _ago(now: dt.datetime, then: dt.datetime) -> str:
    seconds = max(0, round((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"
