"""The webapp2 demo: the shared scenarios, started through the webapp2 app's handlers.

Run it with ``python examples/run_demo.py webapp2`` (or ``nox -s demo -- webapp2``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from demo_kit import runner
from webapp2_app.app import make_app


def _make_app(data_dir: Path) -> Any:
    return make_app({"data_dir": str(data_dir)})


def run(timeout: float = 60.0) -> int:
    """Runs the demo; returns 0 when every scenario showed what was expected, 1 otherwise."""
    return runner.run(_make_app, title="the webapp2 demo app", timeout=timeout)
