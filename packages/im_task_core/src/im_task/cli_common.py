"""What the commands of ``im-task`` share: exit codes, argument types, and plain-text tables."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "clip",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "print_table",
    "usage",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


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
