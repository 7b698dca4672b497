"""The demo's webapp2 app: two handlers of its own, plus the im-task routes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from im_task_webapp2 import routes, setup

# isort: split
import webapp2  # after im_task_webapp2, which imports it without its import-time warnings

from demo_kit import scenarios


class IndexHandler(webapp2.RequestHandler):  # type: ignore[misc]
    """``GET /``: the scenarios, as JSON."""

    def get(self) -> None:
        """Lists the scenarios."""
        self.response.content_type = "application/json"
        self.response.write(json.dumps({"scenarios": list(scenarios.SCENARIOS)}))


class ScenarioHandler(webapp2.RequestHandler):  # type: ignore[misc]
    """``POST /scenarios/<name>``: starts one scenario, which enqueues its task."""

    def post(self, name: str) -> None:
        """Starts the scenario ``name``."""
        try:
            scenarios.start(name)  # a handler calls a task like any function: it is enqueued
        except scenarios.UnknownScenarioError as exc:
            self.abort(404, detail=str(exc))
        self.response.status = 202
        self.response.write(f"started {name}\n")


def make_app(im_task_settings: Mapping[str, Any] | None = None) -> Any:
    """Makes the demo app.

    Args:
        im_task_settings: The im-task settings, put in ``app.config["im_task"]``.

    Returns:
        The app: ``GET /`` lists the scenarios, ``POST /scenarios/<name>``
        starts one, and tasks are served at ``/_ah/task/...``.
    """
    app = webapp2.WSGIApplication(
        [
            webapp2.Route("/", IndexHandler),
            webapp2.Route("/scenarios/<name>", ScenarioHandler),
            *routes(),
        ],
        config={"im_task": dict(im_task_settings or {})},
    )
    return setup(app)
