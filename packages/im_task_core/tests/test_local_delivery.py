"""LocalTransport delivery: WSGI environ, HTTP, headers, retries, backoff, deadlines, redirects, concurrency."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport.wsgi_apps import ConcurrencyProbe, Recorder, request

from im_task.headers import TaskHeaders
from im_task.retry import RetryOptions, RetryPolicy
from im_task.testing import serve_wsgi
from im_task.transports.local import LocalTransport
from im_task.transports.local.delivery import HTTPDelivery, WSGIDelivery, build_environ

FAST = RetryPolicy(max_attempts=5, min_backoff=0.01, max_backoff=0.05)


class ScriptedHTTPServer:
    """A raw TCP server speaking just enough HTTP: each connection gets the next scripted action.

    An action is a status code (answered with ``Connection: close``) or ``"drop"``
    (the connection is closed without an answer).
    """

    def __init__(self, script: list[int | str]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, str]] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                length = int(headers.get("content-length", "0"))
                while len(body) < length:
                    body += conn.recv(65536)
                headers[":request-line"] = lines[0]
                self.requests.append(headers)
                action = self.script.pop(0) if self.script else 200
                if action == "drop":
                    continue
                conn.sendall(f"HTTP/1.1 {action} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[type[ScriptedHTTPServer]]:
    servers: list[ScriptedHTTPServer] = []

    class Tracked(ScriptedHTTPServer):
        def __init__(self, script: list[int | str]) -> None:
            super().__init__(script)
            servers.append(self)

    yield Tracked
    for server in servers:
        server.close()


# -- in-process WSGI delivery ------------------------------------------------


def test_wsgi_environ_is_pep_3333() -> None:
    environ = build_environ(
        "/_ah/task/a%20b/f?x=1&y=2",
        b"body!",
        {"Content-Type": "application/octet-stream", "X-Custom": "v", "Content-Length": "999", "Host": "evil"},
    )
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/_ah/task/a b/f"
    assert environ["QUERY_STRING"] == "x=1&y=2"
    assert environ["CONTENT_TYPE"] == "application/octet-stream"
    assert environ["CONTENT_LENGTH"] == "5"
    assert environ["wsgi.input"].read() == b"body!"
    assert environ["HTTP_X_CUSTOM"] == "v"
    assert environ["HTTP_HOST"] == "localhost"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["SERVER_NAME"] == "localhost"
    assert environ["SERVER_PORT"] == "80"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.version"] == (1, 0)
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.run_once"] is False
    assert all(isinstance(v, str) for k, v in environ.items() if k.isupper())


def test_wsgi_delivery_reads_status_consumes_and_closes() -> None:
    closed: list[bool] = []
    consumed: list[bytes] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            for part in (b"a", b"b"):
                consumed.append(part)
                yield part

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("204 No Content", [])
        return Body()

    outcome = WSGIDelivery(app).deliver("/x", b"", {}, 5.0)
    assert outcome.ok
    assert outcome.status == 204
    assert outcome.error is None
    assert consumed == [b"a", b"b"]
    assert closed == [True]


def test_wsgi_delivery_of_an_exception_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="im_task.local"):
        outcome = WSGIDelivery(app).deliver("/x", b"", {}, 5.0)
    assert outcome.status == 500
    assert not outcome.ok
    assert not outcome.executed
    assert "RuntimeError" in (outcome.error or "")
    assert any("raised" in r.getMessage() for r in caplog.records)


def test_in_process_delivery_end_to_end(db: Path) -> None:
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append({**environ, "body": environ["wsgi.input"].read()})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with LocalTransport(db, target=app) as transport:
        name = transport.enqueue(request(url="/_ah/task/m/f?a=1", headers={"Content-Type": "x/y", "X-Mine": "1"}))
        assert transport.join(5)
    (environ,) = seen
    assert environ["PATH_INFO"] == "/_ah/task/m/f"
    assert environ["QUERY_STRING"] == "a=1"
    assert environ["CONTENT_TYPE"] == "x/y"
    assert environ["CONTENT_LENGTH"] == "7"
    assert environ["body"] == b"payload"
    assert environ["HTTP_X_MINE"] == "1"
    assert environ["HTTP_X_APPENGINE_QUEUENAME"] == "default"
    assert environ["HTTP_X_APPENGINE_TASKNAME"] == name
    assert environ["HTTP_X_APPENGINE_TASKRETRYCOUNT"] == "0"
    assert environ["HTTP_X_APPENGINE_TASKEXECUTIONCOUNT"] == "0"


def test_in_process_exception_is_retried(db: Path) -> None:
    calls: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first time")
        start_response("200 OK", [])
        return []

    with LocalTransport(db, target=app, default_policy=FAST) as transport:
        transport.enqueue(request())
        assert transport.join(5, scheduled=True)
        assert len(calls) == 2
        assert transport.stats().retried == 1


# -- HTTP delivery -------------------------------------------------------------


def test_http_delivery_to_a_real_server(db: Path) -> None:
    app = Recorder()
    with serve_wsgi(app) as url, LocalTransport(db, target=url) as transport:
        names = [transport.enqueue(request(body=b"%d" % i, headers={"X-Mine": "yes"})) for i in range(10)]
        assert transport.join(10)
        assert transport.stats().done == 10
    assert sorted(c["headers"]["x-appengine-taskname"] for c in app.calls) == sorted(names)
    assert {c["path"] for c in app.calls} == {"/_ah/task/mod/fn"}
    assert {c["headers"]["x-mine"] for c in app.calls} == {"yes"}
    assert sorted(c["body"] for c in app.calls) == sorted(b"%d" % i for i in range(10))


def test_http_target_with_path_prefix(db: Path) -> None:
    app = Recorder()
    with serve_wsgi(app) as url, LocalTransport(db, target=url + "/prefix/") as transport:
        transport.enqueue(request(url="/_ah/task/m/f?q=1"))
        assert transport.join(5)
    assert app.calls[0]["path"] == "/prefix/_ah/task/m/f"
    assert app.calls[0]["query"] == "q=1"


def test_http_delivery_reuses_kept_alive_connections() -> None:
    accepted: list[int] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)

    def serve() -> None:
        conn, _ = sock.accept()
        accepted.append(1)
        with conn:
            for _ in range(3):
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    delivery = HTTPDelivery(f"http://127.0.0.1:{sock.getsockname()[1]}")
    try:
        for _ in range(3):
            assert delivery.deliver("/x", b"", {"Content-Type": "a/b"}, 5.0).status == 200
    finally:
        delivery.close()
        sock.close()
    assert accepted == [1]


def test_exact_headers_across_500_408_and_a_connection_failure(db: Path, scripted: Any) -> None:
    server = scripted([500, 408, "drop", 200])
    eta = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    with LocalTransport(db, target=server.url, default_policy=FAST) as transport:
        transport.enqueue(
            request(
                name="tracked",
                queue="emails",
                schedule_time=eta,
                headers={
                    "Content-Type": "application/octet-stream",
                    "X-Custom": "kept",
                    "X-AppEngine-TaskName": "forged",
                    "X-CloudTasks-QueueName": "forged",
                },
            )
        )
        assert transport.join(10, scheduled=True)
        (task,) = transport.tasks()
        assert (task.state, task.attempts, task.executions, task.last_status) == ("done", 4, 2, 200)
    requests = server.requests
    assert len(requests) == 4
    for r in requests:
        assert r[":request-line"] == "POST /_ah/task/mod/fn HTTP/1.1"
        assert r["x-appengine-queuename"] == "emails"
        assert r["x-appengine-taskname"] == "tracked"
        assert float(r["x-appengine-tasketa"]) == pytest.approx(eta.timestamp(), abs=1e-5)
        assert r["x-custom"] == "kept"
        assert r["content-type"] == "application/octet-stream"
        assert r["content-length"] == "7"
        assert "x-cloudtasks-queuename" not in r
    counts = [(r["x-appengine-taskretrycount"], r["x-appengine-taskexecutioncount"]) for r in requests]
    # retry count: attempts before; execution count: earlier answers that were not 5xx (the 408)
    assert counts == [("0", "0"), ("1", "0"), ("2", "1"), ("3", "1")]
    assert "x-appengine-taskpreviousresponse" not in requests[0]
    assert "x-appengine-taskretryreason" not in requests[0]
    assert requests[1]["x-appengine-taskpreviousresponse"] == "500"
    assert requests[1]["x-appengine-taskretryreason"].startswith("HTTP 500")
    assert requests[2]["x-appengine-taskpreviousresponse"] == "408"
    assert requests[2]["x-appengine-taskretryreason"].startswith("HTTP 408")
    assert "x-appengine-taskpreviousresponse" not in requests[3]  # no answer last time
    assert requests[3]["x-appengine-taskretryreason"].startswith("CONNECTION_FAILED")
    parsed = TaskHeaders.parse(requests[3])
    assert parsed is not None
    assert (parsed.retry_count, parsed.execution_count) == (3, 1)


def test_connection_refused_is_retried_then_failed(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    policy = RetryPolicy(max_attempts=3, min_backoff=0.01, max_backoff=0.02)
    with (
        caplog.at_level(logging.ERROR, logger="im_task.local"),
        LocalTransport(db, target=f"http://127.0.0.1:{port}", default_policy=policy) as transport,
    ):
        name = transport.enqueue(request())
        assert transport.join(10, scheduled=True)
        (task,) = transport.tasks()
    assert (task.state, task.attempts, task.executions, task.last_status) == ("gave-up", 3, 0, None)
    assert task.last_error is not None
    assert task.last_error.startswith("CONNECTION_FAILED")
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert name in message
    assert "default" in message
    assert "/_ah/task/mod/fn" in message
    assert "3 attempt" in message


def test_gives_up_after_max_attempts_and_logs(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = Recorder(statuses=[500] * 10)
    policy = RetryPolicy(max_attempts=3, min_backoff=0.01, max_backoff=0.02)
    with (
        caplog.at_level(logging.INFO, logger="im_task.local"),
        LocalTransport(db, target=app, default_policy=policy) as transport,
    ):
        name = transport.enqueue(request(queue="q1"))
        assert transport.join(10, scheduled=True)
        (task,) = transport.tasks()
        stats = transport.stats()
    assert len(app.calls) == 3
    assert (task.state, task.attempts, task.last_status) == ("gave-up", 3, 500)
    assert task.finished is not None
    assert task.size == len(b"payload")
    assert (stats.gave_up, stats.failed, stats.given_up, stats.retried, stats.delivered) == (1, 0, 1, 2, 0)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert all(part in errors[0] for part in (name, "q1", "/_ah/task/mod/fn", "3 attempt", "500"))


def test_per_task_retry_options_and_per_queue_policy(db: Path) -> None:
    app = Recorder(statuses=[500] * 20)
    queue_policy = RetryPolicy(max_attempts=4, min_backoff=0.01, max_backoff=0.02)
    with LocalTransport(db, target=app, queues={"strict": queue_policy}, default_policy=FAST) as transport:
        transport.enqueue(request(name="by-task", retry_options=RetryOptions(task_retry_limit=1)))
        transport.enqueue(request(name="by-queue", queue="strict"))
        transport.enqueue(request(name="by-default"))
        assert transport.join(10, scheduled=True)
        attempts = {t.name: (t.state, t.attempts) for t in transport.tasks()}
    assert attempts == {"by-task": ("gave-up", 2), "by-queue": ("gave-up", 4), "by-default": ("gave-up", 5)}
    assert transport.policy_for("strict") is queue_policy


def test_backoff_timing(db: Path) -> None:
    app = Recorder(statuses=[500, 500, 500])
    policy = RetryPolicy(max_attempts=10, min_backoff=0.05, max_backoff=1.0)
    with LocalTransport(db, target=app, default_policy=policy) as transport:
        transport.enqueue(request())
        assert transport.join(10, scheduled=True)
    times = [c["time"] for c in app.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3
    for gap, expected in zip(gaps, (0.05, 0.1, 0.2), strict=True):
        assert expected - 0.005 <= gap <= expected + 0.25


def test_task_retry_options_backoff_overrides_queue(db: Path) -> None:
    app = Recorder(statuses=[500])
    policy = RetryPolicy(min_backoff=5.0, max_backoff=5.0)
    with LocalTransport(db, target=app, default_policy=policy) as transport:
        transport.enqueue(request(retry_options=RetryOptions(min_backoff_seconds=0.05, max_backoff_seconds=0.05)))
        start = time.monotonic()
        assert transport.join(5, scheduled=True)
        assert time.monotonic() - start < 2
    assert len(app.calls) == 2


def test_task_age_limit(db: Path) -> None:
    app = Recorder(statuses=[500] * 100)
    policy = RetryPolicy(max_attempts=None, min_backoff=0.05, max_backoff=0.05)
    with LocalTransport(db, target=app, default_policy=policy) as transport:
        transport.enqueue(request(retry_options=RetryOptions(task_age_limit=0.3)))
        assert transport.join(5, scheduled=True)
        (task,) = transport.tasks()
    assert task.state == "gave-up"
    assert 3 <= task.attempts <= 9


@pytest.mark.parametrize("over_http", [True, False])
def test_redirects_are_failures_and_not_followed(db: Path, over_http: bool) -> None:
    app = Recorder(statuses=[302, 301])
    policy = RetryPolicy(max_attempts=2, min_backoff=0.01, max_backoff=0.01)
    with serve_wsgi(app) as url:
        target: Any = url if over_http else app
        with LocalTransport(db, target=target, default_policy=policy) as transport:
            transport.enqueue(request())
            assert transport.join(5, scheduled=True)
            (task,) = transport.tasks()
    assert [c["path"] for c in app.calls] == ["/_ah/task/mod/fn", "/_ah/task/mod/fn"]  # /elsewhere never asked
    assert (task.state, task.last_status, task.executions) == ("gave-up", 301, 2)
    assert task.last_error is not None
    assert task.last_error.startswith("HTTP 301")


@pytest.mark.parametrize("over_http", [True, False])
def test_dispatch_deadline(db: Path, over_http: bool) -> None:
    app = Recorder(delay=0.6 if over_http else 0.3)
    with serve_wsgi(app) as url:
        target: Any = url if over_http else app
        policy = RetryPolicy(max_attempts=1)
        with LocalTransport(db, target=target, default_policy=policy) as transport:
            start = time.monotonic()
            transport.enqueue(request(dispatch_deadline=dt.timedelta(seconds=0.15)))
            assert transport.join(5)
            elapsed = time.monotonic() - start
            (task,) = transport.tasks()
    assert (task.state, task.last_status, task.last_error, task.executions) == ("gave-up", None, "DEADLINE_EXCEEDED", 0)
    if over_http:
        assert elapsed < 0.55  # the answer was not awaited
    assert len(app.calls) == 1


def test_transport_default_dispatch_deadline(db: Path) -> None:
    app = Recorder(delay=0.5)
    with serve_wsgi(app) as url:
        policy = RetryPolicy(max_attempts=1)
        with LocalTransport(db, target=url, default_policy=policy, dispatch_deadline=0.1) as transport:
            transport.enqueue(request())
            assert transport.join(5)
            assert transport.tasks()[0].last_error == "DEADLINE_EXCEEDED"


def test_deadline_then_success_with_retry(db: Path) -> None:
    slow_first = Recorder()
    first = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if not first.is_set():
            first.set()
            time.sleep(0.4)
        return slow_first(environ, start_response)

    with serve_wsgi(app) as url, LocalTransport(db, target=url, default_policy=FAST, dispatch_deadline=0.15) as t:
        t.enqueue(request())
        assert t.join(5, scheduled=True)
        (task,) = t.tasks()
    assert (task.state, task.attempts) == ("done", 2)
    retry = [c for c in slow_first.calls if c["headers"]["x-appengine-taskretrycount"] == "1"]
    assert retry
    assert retry[0]["headers"]["x-appengine-taskretryreason"] == "DEADLINE_EXCEEDED"


@pytest.mark.parametrize("over_http", [True, False])
def test_several_deliveries_in_flight(db: Path, over_http: bool) -> None:
    app = ConcurrencyProbe(hold=0.02, barrier=threading.Barrier(4, timeout=5))  # passes only with 4 in flight
    with serve_wsgi(app) as url:
        target: Any = url if over_http else app
        with LocalTransport(db, target=target, concurrency=4) as transport:
            for _ in range(8):
                transport.enqueue(request())
            assert transport.join(10)
            assert transport.stats().done == 8
    assert app.peak == 4


def test_concurrency_is_a_limit(db: Path) -> None:
    app = ConcurrencyProbe(hold=0.01)
    with LocalTransport(db, target=app, concurrency=2) as transport:
        for _ in range(20):
            transport.enqueue(request())
        assert transport.join(10)
    assert app.peak <= 2


def test_enqueue_wakes_the_dispatcher_at_once(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app, poll_interval=5.0) as transport:
        transport.enqueue(request())
        assert transport.join(5)
        time.sleep(0.1)  # the dispatcher is asleep now, for up to 5 s
        start = time.monotonic()
        transport.enqueue(request())
        assert transport.join(5)
        assert time.monotonic() - start < 0.5
    assert len(app.calls) == 2
