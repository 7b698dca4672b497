"""``python -m im_task``: the ``im-task`` command, plus ``--version``.

Examples::

    python -m im_task --version          # im-task 2.0.0
    python -m im_task worker --target http://127.0.0.1:8000

Any other arguments go to the ``im-task`` command (:mod:`im_task.cli`), so
``python -m im_task`` works where the ``im-task`` script is not on ``PATH``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``python -m im_task``.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit code: 0 on success, 1 on failure, 2 for bad usage (as ``im-task``).

    Raises:
        TypeError: ``argv`` is a string rather than a sequence of arguments.
    """
    if isinstance(argv, str):
        raise TypeError(f"argv must be a list of arguments such as ['--version'], not the string {argv!r}")
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments in (["--version"], ["-V"]):
        from im_task import __version__

        print(f"im-task {__version__}")
        return 0
    from im_task import cli

    return cli.main(arguments)


if __name__ == "__main__":
    sys.exit(main())
