"""Runs an example app on the embedded local queue: ``python examples/run_demo.py <framework>``.

Every demo shows the same scenarios (``demo_kit/scenarios.py``) through its
framework's app, run by ``demo_kit/runner.py``. Each framework's demo is a
module with a ``run(timeout: float) -> int`` function returning the exit
status; add a framework with one entry in :data:`DEMOS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

#: Framework name -> module (importable from this directory) whose ``run(timeout=...)`` runs its demo.
DEMOS: dict[str, str] = {
    "flask": "flask_app.demo",
    "django": "django_project.demo",
    "webapp2": "webapp2_app.demo",
}


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and runs one demo.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit status: 0 when the demo saw every expected outcome.
    """
    parser = argparse.ArgumentParser(description="Run an im-task example app on the embedded local queue.")
    parser.add_argument("framework", choices=sorted(DEMOS), help="which example app to run")
    parser.add_argument("--timeout", type=float, default=60.0, help="most seconds to wait for the tasks (60)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        demo = importlib.import_module(DEMOS[args.framework])
    except ImportError as exc:
        print(f"Cannot run the {args.framework} demo: {exc}. Install the im-task-{args.framework} package.")
        return 2
    return int(demo.run(timeout=args.timeout))


if __name__ == "__main__":
    sys.exit(main())
