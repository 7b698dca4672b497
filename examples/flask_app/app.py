"""The demo's Flask app, made by an app factory, with the im-task extension."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, abort

from demo_kit import scenarios
from im_task_flask import ImTask

im_task = ImTask()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Makes the demo app.

    Args:
        config: Flask configuration, e.g. ``IM_TASK_*`` keys.

    Returns:
        The app: ``GET /`` lists the scenarios, ``POST /scenarios/<name>``
        starts one, and tasks are served at ``/_ah/task/...``.
    """
    app = Flask(__name__)
    app.config.from_mapping(config or {})
    im_task.init_app(app)

    @app.get("/")
    def index() -> dict[str, list[str]]:
        return {"scenarios": list(scenarios.SCENARIOS)}

    @app.post("/scenarios/<name>")
    def start(name: str) -> tuple[str, int]:
        try:
            scenarios.start(name)  # a view calls a task like any function: it is enqueued
        except scenarios.UnknownScenarioError as exc:
            abort(404, str(exc))
        return f"started {name}\n", 202

    return app
