"""``manage.py im_task_queue``: ``im-task queue`` with this project's settings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections


class Command(BaseCommand):
    """Runs ``im-task queue list|stats|show|retry|purge`` (same options) after Django applied ``settings.IM_TASK``.

    The queue file, the secrets that verify a task's signature and the tasks'
    modules are the project's, so ``show`` decodes the function and arguments
    of a task the project enqueued.
    """

    help = (
        "Inspect the local queue: 'im-task queue' with this project's IM_TASK settings, e.g. 'list', "
        "'list --state failed', 'stats', 'show NAME', 'retry NAME', 'purge --state done --yes'."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """One argument: the ``im-task queue`` command and its options (from code, ``queue_args=[...]``)."""
        parser.add_argument("queue_args", nargs="*", default=[], help="an 'im-task queue' command and its options")

    def run_from_argv(self, argv: list[str]) -> None:
        """Hands the command line to ``im-task queue`` as it is (Django's parser would refuse its options)."""
        from im_task_django.management.commands.im_task_worker import _without_django_options

        code = self._run(_without_django_options(argv[2:]))
        if code:
            sys.exit(code)

    def handle(self, *args: Any, **options: Any) -> None:
        """Runs ``im-task queue`` with ``queue_args``; for ``call_command("im_task_queue", queue_args=[...])``."""
        code = self._run(list(options["queue_args"] or []))
        if code:
            raise CommandError(f"im-task queue exited with status {code}.", returncode=code)

    @staticmethod
    def _run(arguments: list[str]) -> int:
        from im_task import cli

        try:
            return cli.main(["queue", *arguments])
        finally:
            connections.close_all()
