"""Shared fixtures of the Flask adapter tests: isolated configuration, a Flask app, a real HTTP server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from im_task import configure
from im_task.testing import isolated_settings, serve_wsgi
from im_task.transports import RecordingTransport

# Make the helper modules of this directory (flask_sink) importable by name, so tasks pickle them by reference.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import flask_sink  # noqa: E402 - importable only once the directory is on sys.path
from flask_helpers import TEST_SECRET, Client  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path) -> Iterator[None]:
    """Fresh settings (a fixed secret, a private data dir), no IM_TASK_* environment, the default route."""
    flask_sink.reset()
    with isolated_settings(tmp_path, secret=TEST_SECRET):
        yield
    flask_sink.reset()


@pytest.fixture
def recorder() -> RecordingTransport:
    """A recording transport, configured as the process-wide transport."""
    transport = RecordingTransport()
    configure(transport=transport)
    return transport


@pytest.fixture
def flask_app(recorder: RecordingTransport) -> Flask:
    """A Flask app set up with ImTask, its tasks recorded by ``recorder``."""
    from im_task_flask import ImTask

    app = Flask("im_task_flask_tests")

    @app.post("/hello")
    def hello() -> str:
        return "hello"

    ImTask(app)
    return app


@pytest.fixture
def client(flask_app: Flask) -> Iterator[Client]:
    """An HTTP client of ``flask_app`` served by a real threaded WSGI server on 127.0.0.1."""
    with serve_wsgi(flask_app) as base_url:
        yield Client(base_url)
