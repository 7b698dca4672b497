"""``manage.py im_task_worker``: ``im-task worker`` with this project's settings."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

#: Django's own options, already applied by ``manage.py`` before the command runs.
_DJANGO_OPTIONS = ("--settings", "--pythonpath")
#: The name the worker's usage and errors give the command when it is run from code (``call_command``).
DEFAULT_PROG = "manage.py im_task_worker"


class Command(BaseCommand):
    """Runs ``im-task worker`` (same options), after Django has applied ``settings.IM_TASK``.

    The queue database, the secret and the transport settings come from
    ``IM_TASK``, so the worker finds the queue the project writes to.
    """

    help = (
        "Deliver the local queue's tasks to the running project over HTTP: 'im-task worker' with this project's "
        "IM_TASK settings. Takes the options of 'im-task worker', e.g. --target http://127.0.0.1:8000 --until-empty."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """One argument: the ``im-task worker`` options (from code, ``worker_args=[...]``)."""
        parser.add_argument("worker_args", nargs="*", default=[], help="options of 'im-task worker'")

    def run_from_argv(self, argv: list[str]) -> None:
        """Hands the command line to ``im-task worker`` as it is (Django's parser would refuse its options)."""
        program = os.path.basename(argv[0])
        if program == "__main__.py":  # as Django names it in its own commands' usage
            program = "python -m django"
        prog = f"{program} {argv[1]}"  # "manage.py im_task_worker", not im-task's own "im-task worker"
        code = self._run(_without_django_options(argv[2:]), prog)
        if code:
            sys.exit(code)

    def handle(self, *args: Any, **options: Any) -> None:
        """Runs the worker with ``worker_args``; for ``call_command("im_task_worker", worker_args=[...])``."""
        code = self._run(list(options["worker_args"] or []), DEFAULT_PROG)
        if code:
            raise CommandError(f"im-task worker exited with status {code}.", returncode=code)

    @staticmethod
    def _run(arguments: list[str], prog: str) -> int:
        from im_task import cli

        try:
            return cli.main(["worker", *arguments], worker_prog=prog)
        finally:
            connections.close_all()


def _without_django_options(arguments: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument in _DJANGO_OPTIONS:
            skip = True
        elif not argument.startswith(tuple(f"{option}=" for option in _DJANGO_OPTIONS)):
            kept.append(argument)
    return kept
