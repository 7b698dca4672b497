"""Shared fixtures of the Flask adapter tests: isolated configuration, a Flask app, a real HTTP server.

Isolation and the recording transport come from im-task's pytest plugin
(``im_task_settings``, ``im_task_recorder``); the task sink and the HTTP
client from the shared :mod:`im_task_testsupport`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from im_task_testsupport import sink
from im_task_testsupport.raw_http import Client

from flask_helpers import TEST_SECRET
from im_task.testing import serve_wsgi
from im_task.testing.plugin import ImTaskSettings
from im_task.transports import RecordingTransport


@pytest.fixture(autouse=True)
def _isolated_config(im_task_settings: ImTaskSettings) -> Iterator[None]:
    """Fresh settings (a fixed secret, a private data dir), no IM_TASK_* environment, the default route."""
    sink.reset()
    im_task_settings(secret=TEST_SECRET)
    yield
    sink.reset()


@pytest.fixture
def recorder(im_task_recorder: RecordingTransport) -> RecordingTransport:
    """The plugin's ``im_task_recorder``: a recording transport, configured as the process-wide transport."""
    return im_task_recorder


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
