"""What the commands of ``im-task`` share: exit codes, their error, ``--setup``, argument types, plain-text tables."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TextIO

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "add_setup_option",
    "clip",
    "import_setup",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "print_table",
    "usage",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure to report as ``im-task: error: ...`` with a non-zero exit code.

    Args:
        message: What went wrong, and what to do about it.
        code: The exit code (``EXIT_FAILURE`` unless the command was used wrongly: ``EXIT_USAGE``).
    """

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def add_setup_option(parser: argparse.ArgumentParser) -> None:
    """Adds ``--setup MODULE`` to a command that reads or runs the app's tasks; :func:`import_setup` imports it.

    Args:
        parser: The command's parser.
    """
    parser.add_argument(
        "--setup",
        metavar="MODULE",
        help=(
            "module to import first, e.g. myapp.settings: it configures im-task as your app does (secrets, data "
            "directory) and makes the tasks' functions importable"
        ),
    )


def import_setup(args: argparse.Namespace) -> None:
    """Imports the ``--setup`` module, which configures im-task (``configure()``) as the app does.

    Args:
        args: The parsed arguments; nothing is imported when they have no ``setup``, or an empty one.

    Raises:
        CommandError: The module does not import.
    """
    module = getattr(args, "setup", None)
    if not module:
        return
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise CommandError(
            f"cannot import --setup {module}: {exc}. Give the module that configures your app, as you would "
            "import it, and run from your project's directory (it is put on sys.path)."
        ) from exc


def usage(parser: argparse.ArgumentParser) -> int:
    """Prints a command's help on stderr, for a command given without its subcommand; returns the usage exit code."""
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def positive_int(text: str) -> int:
    """An argument that is a whole number of at least 1.

    Raises:
        argparse.ArgumentTypeError: Saying what is wrong with ``text``.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """An argument that is a finite number above 0.

    Raises:
        argparse.ArgumentTypeError: Saying what is wrong with ``text``.
    """
    value = _number(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argument that is a finite number of at least 0.

    Raises:
        argparse.ArgumentTypeError: Saying what is wrong with ``text``.
    """
    value = _number(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text}")
    return value


def _number(text: str) -> float:
    """``text`` read as a number, or an argparse error saying it is not one."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def clip(text: str, width: int) -> str:
    """``text``, cut to ``width`` characters with an ellipsis when longer."""
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(headers: list[str], rows: list[list[str]], out: TextIO) -> None:
    """Prints rows under their headers, in columns as wide as their widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip(), file=out)
