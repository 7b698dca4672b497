"""Hostile and slow clients, through every adapter on real servers: werkzeug's and the standard library's.

A body that cannot be read (malformed chunked encoding, a body cut short, a
connection reset) is answered 400 and logged once at WARNING without a
traceback, never 500; values of the request reach the log escaped; and the
endpoint never reads more of a body than ``max_body_size`` (plus one byte to
know it is over), whatever the client sends. The bytes read are counted on
the server's own ``wsgi.input``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from conformance_support import CAP, enqueue, queue_headers
from im_task_testsupport import sink

from conftest import Adapter
from im_task import task
from im_task.routing import DEFAULT_TASKROUTE
from im_task.testing import serve_wsgi

#: How long a client waits for an answer, in seconds.
TIMEOUT = 10.0
FORGED = "\r\nCRITICAL:im_task:forged line"


@task
def ran(value: object) -> None:
    sink.record("ran", value)


class CountingInput:
    """A server's ``wsgi.input``, counting the bytes the application reads from it."""

    def __init__(self, stream: Any, counter: BytesRead) -> None:
        self._stream = stream
        self._counter = counter

    def read(self, size: int = -1) -> bytes:
        """Reads and counts."""
        return self._counter.add(self._stream.read(size))

    def readline(self, size: int = -1) -> bytes:
        """Reads a line and counts."""
        return self._counter.add(self._stream.readline(size))

    def readinto(self, buffer: Any) -> int:
        """Reads into a buffer and counts."""
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


@dataclass
class BytesRead:
    """The bytes the application read of each request's body, by request, in order."""

    counts: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, data: bytes) -> bytes:
        with self.lock:
            self.counts[-1] += len(data)
        return data

    def start(self) -> None:
        with self.lock:
            self.counts.append(0)

    @property
    def last(self) -> int:
        with self.lock:
            return self.counts[-1]


def counting(app: Callable[..., Any], counter: BytesRead) -> Callable[..., Any]:
    """Wraps a WSGI application so that every byte it reads of a body is counted."""

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        counter.start()
        environ["wsgi.input"] = CountingInput(environ["wsgi.input"], counter)
        return app(environ, start_response)

    return counted


@contextmanager
def werkzeug_server(app: Callable[..., Any]) -> Iterator[str]:
    """Serves an application with werkzeug's development server (threaded, HTTP/1.1, decodes chunked bodies)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


SERVERS: dict[str, tuple[str, Callable[[Callable[..., Any]], AbstractContextManager[str]]]] = {
    "werkzeug": ("werkzeug", werkzeug_server),
    "wsgiref": ("wsgiref", serve_wsgi),
}


@dataclass(frozen=True)
class Site:
    """An adapter's application on a real server, with the bytes it read of each body."""

    adapter: str
    server: str
    port: int
    read: BytesRead

    @property
    def decodes_chunked(self) -> bool:
        """Whether a chunked body reaches the endpoint (werkzeug decodes it; Django reads only a sized body)."""
        return self.server == "werkzeug" and self.adapter != "django"

    def send(self, head: bytes, body: bytes = b"", *, finish: str = "half-close") -> bytes | None:
        """Sends raw bytes and returns the status line; None when there is none to read.

        A server that refuses a body before reading all of it (413) closes with
        bytes unread, which resets the connection: its answer may then be lost
        before it is read, and None is returned.

        Args:
            head: The request line and headers.
            body: The bytes that follow, as sent (malformed or short, as the test wants).
            finish: ``"half-close"`` stops sending and reads the answer; ``"reset"``
                aborts the connection (RST) without reading anything.
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as connection:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a refusal may close before all is sent
                connection.sendall(head + body)
            if finish == "reset":
                time.sleep(0.2)  # the server has the head and is reading the body
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return None
            with contextlib.suppress(OSError):  # the server may have answered and closed already
                connection.shutdown(socket.SHUT_WR)
            answer = b""
            with contextlib.suppress(ConnectionResetError):
                while b"\r\n" not in answer:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
            return answer.split(b"\r\n", 1)[0] or None


def head(path: str, headers: dict[str, str], *framing: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *framing]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def status(line: bytes | None) -> int:
    assert line is not None
    assert line.startswith(b"HTTP/1."), line
    return int(line.split()[1])


@pytest.fixture(params=sorted(SERVERS))
def site(request: pytest.FixtureRequest, adapter: Adapter) -> Iterator[Site]:
    """The adapter's application behind a counting ``wsgi.input``, on each real server in turn."""
    module, serve = SERVERS[request.param]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    read = BytesRead()
    with adapter.build(DEFAULT_TASKROUTE, {"max_body_size": CAP}) as app, serve(counting(app, read)) as base_url:
        yield Site(adapter.name, request.param, int(base_url.rsplit(":", 1)[1]), read)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO):
        yield caplog


def refusals(caplog: pytest.LogCaptureFixture, timeout: float = 5.0) -> list[logging.LogRecord]:
    """The im_task logger's records once one has arrived (a server thread logs them), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = [r for r in caplog.records if r.name == "im_task"]
        if records:
            time.sleep(0.1)  # anything logged right after
            return [r for r in caplog.records if r.name == "im_task"]
        time.sleep(0.02)
    return []


def assert_refused_quietly(caplog: pytest.LogCaptureFixture, why: str) -> logging.LogRecord:
    """One WARNING from im_task saying why, no traceback, and nothing at ERROR from anyone."""
    [record] = refusals(caplog)
    assert (record.levelno, record.exc_info) == (logging.WARNING, None), record.getMessage()
    assert why in record.getMessage()
    assert "\n" not in record.getMessage()
    errors = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert "Traceback" not in caplog.text
    return record


# --- a body that cannot be read is 400, logged once at WARNING --------------------------------------------------


def test_malformed_chunked_encoding_is_400_and_no_traceback(site: Site, logs: pytest.LogCaptureFixture) -> None:
    request = enqueue(ran, "never")
    framing = "Transfer-Encoding: chunked"
    line = site.send(head(request.url, {**request.headers, **queue_headers()}, framing), b"zz\r\nabc\r\n0\r\n\r\n")
    # The rest of the body is left unread, so the answer may be lost to a reset; the log says what it was.
    if site.decodes_chunked:
        assert line is None or status(line) == 400
        assert_refused_quietly(logs, "could not be read")
    else:  # no Content-Length: no body reaches the endpoint (PEP 3333), so no envelope
        assert line is None or status(line) == 403
        assert_refused_quietly(logs, "too short to be a task envelope")
    assert sink.events() == []


def test_a_chunked_body_cut_short_is_400(site: Site, logs: pytest.LogCaptureFixture) -> None:
    request = enqueue(ran, "never")
    chunk = f"{len(request.body):x}\r\n".encode() + request.body[:20]  # the size of it all, 20 bytes, then the end
    line = site.send(head(request.url, {**request.headers, **queue_headers()}, "Transfer-Encoding: chunked"), chunk)
    assert status(line) == (400 if site.decodes_chunked else 403)
    if site.decodes_chunked:
        assert_refused_quietly(logs, "could not be read")
    assert sink.events() == []


def test_a_body_shorter_than_its_content_length_is_400(site: Site, logs: pytest.LogCaptureFixture) -> None:
    request = enqueue(ran, "never")
    framing = f"Content-Length: {len(request.body)}"
    line = site.send(head(request.url, {**request.headers, **queue_headers()}, framing), request.body[:-10])
    assert status(line) == 400
    assert_refused_quietly(logs, "")
    assert sink.events() == []


def test_a_connection_reset_mid_body_is_a_warning_and_the_server_serves_on(
    site: Site, logs: pytest.LogCaptureFixture
) -> None:
    request = enqueue(ran, "never")
    framing = f"Content-Length: {CAP - 100}"
    assert (
        site.send(head(request.url, {**request.headers, **queue_headers()}, framing), b"x" * 100, finish="reset")
        is None
    )
    record = assert_refused_quietly(logs, "")
    assert "could not be read" in record.getMessage() or "ended after" in record.getMessage()
    logs.clear()
    good = enqueue(ran, "after the reset")
    framing = f"Content-Length: {len(good.body)}"
    assert status(site.send(head(good.url, {**good.headers, **queue_headers()}, framing), good.body)) == 200
    assert sink.events() == [("ran", "after the reset")]


# --- log forging: values of the request are escaped ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "routed_by_all"),
    [
        ("%0d%0aCRITICAL:im_task:forged%0aline", False),  # werkzeug's and Django's routes match no line feed: 404
        ("%0dCRITICAL:im_task:forged%1b[2K%7f", True),  # a carriage return and a terminal escape reach every adapter
    ],
)
def test_a_path_with_control_characters_is_logged_escaped_on_one_line(
    site: Site, logs: pytest.LogCaptureFixture, tail: str, routed_by_all: bool
) -> None:
    path = f"{DEFAULT_TASKROUTE}/app/work{tail}"
    line = site.send(head(path, queue_headers(), "Content-Length: 0"))  # nothing left unread to reset the answer
    expected = (403,) if routed_by_all or site.adapter == "wsgi" else (403, 404)
    assert status(line) in expected
    records = refusals(logs, timeout=5.0 if status(line) == 403 else 1.0)
    assert len(records) == (1 if status(line) == 403 else 0)
    for record in records:
        message = record.getMessage()
        assert record.levelno == logging.WARNING
        assert "forged" in message
        assert all(c.isprintable() for c in message), message
    everything = [r.getMessage() for r in logs.records]  # the framework's own lines too (Django's "Not Found")
    assert all("\n" not in m and "\r" not in m for m in everything), everything


# --- slow clients: nothing is read past max_body_size --------------------------------------------------------------


def test_a_declared_length_over_the_cap_is_refused_reading_nothing(site: Site, logs: pytest.LogCaptureFixture) -> None:
    request = enqueue(ran, "never")
    framing = f"Content-Length: {4 * CAP}"
    line = site.send(head(request.url, {**request.headers, **queue_headers()}, framing), b"x" * (4 * CAP))
    assert line is None or status(line) == 413  # the log says 413 when the reset lost the answer
    assert site.read.last == 0
    assert_refused_quietly(logs, "max_body_size")


def test_a_chunked_body_over_the_cap_is_read_no_further_than_cap_plus_one(
    site: Site, logs: pytest.LogCaptureFixture
) -> None:
    request = enqueue(ran, "never")
    body = b"".join(f"{1024:x}\r\n".encode() + b"y" * 1024 + b"\r\n" for _ in range(4 * CAP // 1024)) + b"0\r\n\r\n"
    line = site.send(head(request.url, {**request.headers, **queue_headers()}, "Transfer-Encoding: chunked"), body)
    if site.decodes_chunked:
        assert line is None or status(line) == 413
        assert 0 < site.read.last <= CAP + 1
        assert_refused_quietly(logs, "max_body_size")
    else:
        assert line is None or status(line) == 403  # the body is left unread: a reset may lose the answer
        assert site.read.last == 0
        assert_refused_quietly(logs, "too short to be a task envelope")


def test_bytes_past_the_declared_length_are_never_read(site: Site) -> None:
    request = enqueue(ran, "sized")
    framing = f"Content-Length: {len(request.body)}"
    extra = b"z" * (2 * CAP)  # more than the cap, sent after the declared body
    line = site.send(head(request.url, {**request.headers, **queue_headers()}, framing), request.body + extra)
    assert line is None or status(line) == 200  # the extra bytes are left unread: a reset may lose the answer
    assert site.read.last == len(request.body)
    assert sink.events() == [("ran", "sized")]
