"""``manage.py im_task_sweep``: send the transactional tasks left in the outbox."""

from __future__ import annotations

from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from im_task_django.outbox import sweep_outbox


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ArgumentTypeError(f"expected a number of seconds >= 0, not {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise ArgumentTypeError(f"expected a number of seconds > 0, not {text!r}")
    return value


class Command(BaseCommand):
    """Sends outbox tasks whose send after commit did not happen (run it from cron)."""

    help = (
        "Send the transactional im-task tasks still in the outbox (their process died between the commit and "
        "the send, or the queue could not be reached) and delete the rows marked sent. Each row is claimed before "
        "it is sent, so several sweeps may run at once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Adds ``--older-than``, ``--lease``, ``--database`` and ``--limit``."""
        parser.add_argument(
            "--older-than",
            type=_seconds,
            default=None,
            metavar="SECONDS",
            help="Only tasks committed, or whose last claim ended, at least this long ago "
            "(default: IM_TASK['SWEEP_OLDER_THAN'], 60).",
        )
        parser.add_argument(
            "--lease",
            type=_positive_seconds,
            default=None,
            metavar="SECONDS",
            help="How long each claim lasts: the longest a send may take (default: IM_TASK['CLAIM_SECONDS'], 30).",
        )
        parser.add_argument(
            "--database", default=None, help="Database alias of the outbox (default: IM_TASK['DATABASE'])."
        )
        parser.add_argument("--limit", type=int, default=None, help="Most tasks to send in this run.")

    def handle(self, *args: Any, **options: Any) -> None:
        """Sweeps the outbox and reports the counts; fails when a task could not be sent."""
        try:
            result = sweep_outbox(
                options["older_than"], using=options["database"], limit=options["limit"], lease=options["lease"]
            )
        except ValueError as exc:  # ConfigurationError
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Outbox sweep: {result.sent} sent, {result.already_sent} already sent, {result.failed} failed, "
            f"{result.taken} taken by another sender, {result.purged} sent rows deleted."
        )
        if result.failed:
            raise CommandError(f"{result.failed} task(s) could not be sent; they stay in the outbox for the next run.")
