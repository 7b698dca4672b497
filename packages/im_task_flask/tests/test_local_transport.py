"""The embedded local queue delivering to the Flask adapter: over HTTP to a real server, and in process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import flask
import pytest
from flask import Flask
from im_task_testsupport import sink as flask_sink

from im_task import configure, get_queue_name, get_retry_count, task
from im_task.retry import RetryPolicy
from im_task.testing import serve_wsgi
from im_task.transports import LocalTransport
from im_task_flask import ImTask

FAST = RetryPolicy(min_backoff=0.05, max_backoff=0.2)


@pytest.fixture
def app() -> Flask:
    app = Flask("local_queue")
    app.config["IM_TASK_TRANSPORT"] = "recording"  # replaced by each test's LocalTransport through configure()
    ImTask(app)
    return app


@pytest.fixture
def http_queue(app: Flask, tmp_path: Path) -> Iterator[LocalTransport]:
    """A local queue delivering over HTTP to ``app`` served on 127.0.0.1."""
    with serve_wsgi(app) as base_url:
        transport = LocalTransport(tmp_path / "http.sqlite3", target=base_url, default_policy=FAST)
        configure(transport=transport)
        try:
            yield transport
        finally:
            transport.close()


@pytest.fixture
def in_process_queue(app: Flask, tmp_path: Path) -> Iterator[LocalTransport]:
    """A local queue delivering in process to the app ImTask registered (no target given)."""
    transport = LocalTransport(tmp_path / "local.sqlite3", default_policy=FAST)
    configure(transport=transport)
    try:
        yield transport
    finally:
        transport.close()


def test_a_closure_is_delivered_over_http(http_queue: LocalTransport) -> None:
    greeting = "hello"

    @task
    def greet(name: str) -> None:
        flask_sink.record(f"{greeting} {name}", get_queue_name())

    greet("flask")
    assert flask_sink.wait_for(1) == [("hello flask", "default")]
    assert http_queue.join(timeout=30)
    assert http_queue.stats().done == 1


def test_a_failing_task_is_retried_through_500_until_it_succeeds(http_queue: LocalTransport) -> None:
    @task
    def flaky() -> None:
        flask_sink.record("attempt", get_retry_count())
        if get_retry_count() < 2:
            raise RuntimeError("not yet")

    flaky()
    assert http_queue.join(timeout=30, scheduled=True)
    assert flask_sink.calls == [("attempt", 0), ("attempt", 1), ("attempt", 2)]
    stats = http_queue.stats()
    assert (stats.done, stats.failed, stats.retried) == (1, 0, 2)


def test_a_countdown_delays_the_task(http_queue: LocalTransport) -> None:
    @task(countdown=1)
    def later(enqueued_at: float) -> None:
        flask_sink.record(time.time() - enqueued_at)

    later(time.time())
    (waited,) = flask_sink.wait_for(1)
    assert waited >= 0.95
    assert http_queue.join(timeout=30, scheduled=True)


def test_tasks_are_delivered_in_process_to_the_registered_flask_app(in_process_queue: LocalTransport) -> None:
    @task(queue="inproc")
    def where() -> None:
        flask_sink.record(flask.has_request_context(), flask.current_app.name, flask.request.path, get_queue_name())

    where()
    assert in_process_queue.join(timeout=30)
    (seen,) = flask_sink.calls
    assert seen[:2] == (True, "local_queue")
    assert seen[2].startswith("/_ah/task/")
    assert seen[3] == "inproc"


def test_retries_work_in_process_too(in_process_queue: LocalTransport) -> None:
    @task
    def flaky() -> None:
        flask_sink.record(get_retry_count())
        if get_retry_count() < 1:
            raise RuntimeError("once")

    flaky()
    assert in_process_queue.join(timeout=30, scheduled=True)
    assert flask_sink.calls == [0, 1]
