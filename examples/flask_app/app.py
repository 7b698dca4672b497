"""The demo's Flask app, made by an app factory, with the im-task extension."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, abort

from flask_app.tasks import SCENARIOS
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
        return {"scenarios": list(SCENARIOS)}

    @app.post("/scenarios/<name>")
    def start(name: str) -> tuple[str, int]:
        if name not in SCENARIOS:
            abort(404, f"No scenario {name!r}; try one of {', '.join(SCENARIOS)}.")
        SCENARIOS[name]()
        return f"started {name}\n", 202

    return app
