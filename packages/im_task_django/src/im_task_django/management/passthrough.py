"""The ``manage.py`` commands that run an ``im-task`` command as it is, after Django applied ``settings.IM_TASK``.

``manage.py im_task_worker``, ``im_task_queue`` and ``im_task_dead`` hand their
command line to ``im-task worker``, ``queue`` and ``dead`` (Django's parser
would refuse their options), so the queue file, the secrets and the stores
are the project's.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

__all__ = ["ImTaskCommand", "without_django_options"]

#: Django's own options, already applied by ``manage.py`` before the command runs.
DJANGO_OPTIONS = ("--settings", "--pythonpath")


class ImTaskCommand(BaseCommand):
    """A ``manage.py`` command that runs ``im-task <im_task_command>`` with the arguments it is given.

    From the command line, everything after the command's name goes to ``im-task`` (less Django's own
    ``--settings`` and ``--pythonpath``); from code, ``call_command(name, <im_task_command>_args=[...])``.

    Attributes:
        im_task_command: The ``im-task`` command run (``"worker"``, ``"queue"``, ``"dead"``).
        arguments_help: The help of the one argument that holds its command line.
    """

    im_task_command: ClassVar[str]
    arguments_help: ClassVar[str]

    @classmethod
    def _argument(cls) -> str:
        return f"{cls.im_task_command}_args"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """One argument: the ``im-task`` command line (from code, ``<im_task_command>_args=[...]``)."""
        parser.add_argument(self._argument(), nargs="*", default=[], help=self.arguments_help)

    def run_from_argv(self, argv: list[str]) -> None:
        """Hands the command line to ``im-task`` as it is (Django's parser would refuse its options)."""
        program = os.path.basename(argv[0])
        if program == "__main__.py":  # as Django names it in its own commands' usage
            program = "python -m django"
        code = self._run(without_django_options(argv[2:]), f"{program} {argv[1]}")
        if code:
            sys.exit(code)

    def handle(self, *args: Any, **options: Any) -> None:
        """Runs the ``im-task`` command with ``<im_task_command>_args``; for ``call_command``."""
        code = self._run(list(options[self._argument()] or []), f"manage.py im_task_{self.im_task_command}")
        if code:
            raise CommandError(f"im-task {self.im_task_command} exited with status {code}.", returncode=code)

    def _run(self, arguments: list[str], prog: str) -> int:
        try:
            return self.run_im_task(arguments, prog)
        finally:
            connections.close_all()

    def run_im_task(self, arguments: list[str], prog: str) -> int:
        """Runs ``im-task <im_task_command> <arguments>`` and returns its exit code.

        Args:
            arguments: The command's arguments.
            prog: The name the command goes by (``manage.py im_task_worker``), for usage lines that say it.
        """
        from im_task import cli

        del prog  # only the worker's usage names its program
        return cli.main([self.im_task_command, *arguments])


def without_django_options(arguments: list[str]) -> list[str]:
    """The arguments less Django's own ``--settings`` and ``--pythonpath`` (with their values), already applied."""
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument in DJANGO_OPTIONS:
            skip = True
        elif not argument.startswith(tuple(f"{option}=" for option in DJANGO_OPTIONS)):
            kept.append(argument)
    return kept
