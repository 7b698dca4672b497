"""The Flask demo: the shared scenarios, started through the Flask app's routes.

Run it with ``python examples/run_demo.py flask`` (or ``nox -s demo``).
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from demo_kit import runner
from flask_app.app import create_app


def _make_app(data_dir: Path) -> Flask:
    return create_app({"IM_TASK_DATA_DIR": str(data_dir)})


def run(timeout: float = 60.0) -> int:
    """Runs the demo; returns 0 when every scenario showed what was expected, 1 otherwise."""
    return runner.run(_make_app, title="the Flask demo app", timeout=timeout)
