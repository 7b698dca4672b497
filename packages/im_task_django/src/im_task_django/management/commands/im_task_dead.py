"""``manage.py im_task_dead``: ``im-task dead`` with this project's settings and its dead-letter table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections


class Command(BaseCommand):
    """Runs ``im-task dead list|show|replay|purge`` (same options) after Django applied ``settings.IM_TASK``.

    The dead letters are those of the store in force: the project's database
    (``DeadLetterRecord``) unless ``IM_TASK["DEAD_LETTER_STORE"]`` names another.
    """

    help = (
        "List, show, replay or purge dead letters (tasks that failed permanently, gave up or were dropped): "
        "'im-task dead' with this project's IM_TASK settings, e.g. 'list', 'show NAME', 'replay NAME', 'purge --yes'."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """One argument: the ``im-task dead`` command and its options (from code, ``dead_args=[...]``)."""
        parser.add_argument("dead_args", nargs="*", default=[], help="an 'im-task dead' command and its options")

    def run_from_argv(self, argv: list[str]) -> None:
        """Hands the command line to ``im-task dead`` as it is (Django's parser would refuse its options)."""
        from im_task_django.management.commands.im_task_worker import _without_django_options

        code = self._run(_without_django_options(argv[2:]))
        if code:
            sys.exit(code)

    def handle(self, *args: Any, **options: Any) -> None:
        """Runs ``im-task dead`` with ``dead_args``; for ``call_command("im_task_dead", dead_args=[...])``."""
        code = self._run(list(options["dead_args"] or []))
        if code:
            raise CommandError(f"im-task dead exited with status {code}.", returncode=code)

    @staticmethod
    def _run(arguments: list[str]) -> int:
        from im_task import cli

        try:
            return cli.main(["dead", *arguments])
        finally:
            connections.close_all()
