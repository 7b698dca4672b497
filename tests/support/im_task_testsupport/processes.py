"""Running Python in a child process that imports the core from this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import im_task

#: The source folder of the core package, for the ``PYTHONPATH`` of child processes.
SRC = str(Path(im_task.__file__).resolve().parents[1])


def python_env() -> dict[str, str]:
    """This process's environment, with the core's source folder first on ``PYTHONPATH``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` (dedented) in a fresh Python process that imports the core; returns its captured result."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=python_env(),
    )
