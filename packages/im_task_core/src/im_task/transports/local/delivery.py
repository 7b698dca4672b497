"""Delivering one task: a POST to a WSGI application in process, or over HTTP.

Both deliverers answer with an :class:`Outcome`: the HTTP status received (if
any) and, for anything but a 2xx, why the attempt failed. Neither follows
redirects, and neither raises for a failed delivery.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes, urlsplit

from im_task.errors import ConfigurationError
from im_task.logfallback import PassiveHandler
from im_task.response import OUTCOME_HEADER

__all__ = [
    "DEADLINE_EXCEEDED",
    "Deliverer",
    "LOCAL_DELIVERY_KEY",
    "HTTPDelivery",
    "Outcome",
    "WSGIDelivery",
    "build_environ",
]

logger = logging.getLogger("im_task.local")

WSGIApp = Callable[..., Any]
#: Retry reason of an attempt that got no answer before its dispatch deadline.
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
_MAX_DRAIN = 1024 * 1024  # response bytes read to keep a connection; past this it is dropped
_MAX_DETAIL = 4096  # bytes of a failed attempt's response body kept as its error
#: The WSGI environ key that marks a request as the local queue's in-process delivery (adapters may read it).
LOCAL_DELIVERY_KEY = "im_task.local_delivery"


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt got.

    Attributes:
        status: The HTTP status answered, or None when there was no answer in time.
        error: Why the attempt failed (the retry reason), or None on success.
        outcome: What the endpoint said became of the task (its ``X-Im-Task-Outcome``
            header: ``ran``, ``failed``, ``gave-up``, ``dropped``, ``retry``,
            ``refused``), or None when it said nothing (not an im-task endpoint).
        detail: The error in full, for a person: a traceback, or the status
            and the start of the body answered; None on success.
    """

    status: int | None
    error: str | None = None
    outcome: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the task was delivered: any 2xx answer."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def executed(self) -> bool:
        """Whether the attempt counts as an execution: an answer other than 5xx."""
        return self.status is not None and self.status < 500


class Deliverer(Protocol):
    """Something that POSTs a task somewhere."""

    def deliver(self, url: str, body: bytes, headers: Mapping[str, str], deadline: float) -> Outcome:
        """POSTs ``body`` to ``url`` and reports the outcome; never raises for a failed delivery."""
        ...

    def close(self) -> None:
        """Releases connections."""
        ...


_SUCCESSES: dict[tuple[int, str | None], Outcome] = {}


def _failure_for_status(status: int, reason: str, outcome: str | None = None, body: bytes = b"") -> Outcome:
    outcome = outcome.strip().lower() if outcome else None
    if 200 <= status < 300:
        if outcome in (None, "ran"):
            ok = _SUCCESSES.get((status, outcome))  # frozen, so shared: one is made per task otherwise
            if ok is None:
                ok = _SUCCESSES[(status, outcome)] = Outcome(status, outcome=outcome)
            return ok
        text = body.decode("utf-8", "replace").strip()
        return Outcome(status, outcome=outcome, detail=f"HTTP {status} {reason} ({outcome}): {text}".strip())
    line = f"HTTP {status} {reason}".strip()
    if outcome == "retry" and status < 500:  # SingularTaskFailure's 408: no timeout, the task asked for a retry
        line = f"HTTP {status}: the task asked to be retried"
    text = body[:_MAX_DETAIL].decode("utf-8", "replace").strip()
    return Outcome(status, line, outcome, f"{line}: {text}" if text else line)


def _header_safe(text: str, limit: int = 200) -> str:
    cleaned = " ".join(text.split())
    cleaned = cleaned.encode("latin-1", "replace").decode("latin-1")
    return cleaned[:limit]


class HTTPDelivery:
    """Delivers tasks over HTTP to a base URL, with one kept-alive connection per thread.

    The task's URL path is appended to the base URL's path. Redirects are
    answers like any other: a 3xx is a failed attempt.

    Args:
        base_url: ``http://host:port`` or ``https://host:port``, optionally with a path prefix.

    Raises:
        ConfigurationError: For a URL that is not http(s) with a host.
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"The local queue's target must be a WSGI callable or a base URL like 'http://127.0.0.1:8000', "
                f"not {base_url!r}."
            )
        if parts.query or parts.fragment:
            raise ConfigurationError(f"The target URL {base_url!r} may not have a query or a fragment.")
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"The target URL {base_url!r} has a bad port: {exc}.") from exc
        self.base_url = base_url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path.rstrip("/")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []

    def __repr__(self) -> str:
        return f"HTTPDelivery({self.base_url!r})"

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def deliver(self, url: str, body: bytes, headers: Mapping[str, str], deadline: float) -> Outcome:
        """POSTs the task and waits at most ``deadline`` seconds in all for the answer.

        Args:
            url: Path (and query) of the task, appended to the base URL's path.
            body: The body.
            headers: Every header to send (``Host`` and ``Content-Length`` are added).
            deadline: Seconds to wait for the whole answer.

        Returns:
            The outcome; a connection failure or a timeout is a failed outcome with no status.
        """
        start = time.monotonic()
        conn = self._connection()
        path = self._prefix + url
        for retry in (False, True):
            reused = conn.sock is not None
            try:
                conn.timeout = deadline
                if conn.sock is not None:
                    conn.sock.settimeout(deadline)
                conn.request("POST", path, body=body, headers=dict(headers))
                remaining = deadline - (time.monotonic() - start)
                if remaining <= 0:
                    raise TimeoutError
                if conn.sock is not None:
                    conn.sock.settimeout(remaining)
                response = conn.getresponse()
                start_of_body = self._drain(conn, response)
            except TimeoutError:
                conn.close()
                return _deadline_exceeded(deadline)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                if reused and not retry:  # the server dropped an idle kept-alive connection: reconnect once
                    continue
                return _connection_failed(self.base_url, exc)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                return _connection_failed(self.base_url, exc)
            if time.monotonic() - start > deadline:
                return _deadline_exceeded(deadline)
            return _failure_for_status(
                response.status, response.reason, response.getheader(OUTCOME_HEADER), start_of_body
            )
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _drain(conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> bytes:
        """Reads the answer (to keep the connection) and returns the start of its body."""
        read = 0
        start = b""
        while read <= _MAX_DRAIN:
            chunk = response.read(65536)
            if not chunk:
                break
            if read < _MAX_DETAIL:
                start += chunk[: _MAX_DETAIL - read]
            read += len(chunk)
        if not response.isclosed():
            response.close()
            conn.close()
        return start

    def close(self) -> None:
        """Closes every connection opened by any thread."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()


def build_environ(
    url: str, body: bytes, headers: Mapping[str, str], *, server_name: str = "localhost", server_port: str = "80"
) -> dict[str, Any]:
    """The PEP 3333 environ of a task POST, as a WSGI server would build it.

    Args:
        url: Path and query of the task; percent-escapes are decoded in ``PATH_INFO``.
        body: The request body (``wsgi.input`` reads it).
        headers: Request headers; ``Content-Type`` and ``Content-Length`` become
            ``CONTENT_TYPE``/``CONTENT_LENGTH``, the others ``HTTP_*``.
        server_name: ``SERVER_NAME`` and ``HTTP_HOST``.
        server_port: ``SERVER_PORT``.

    Returns:
        The environ.
    """
    path, _, query = url.partition("?")
    environ = _BASE_ENVIRON.copy()
    environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1")
    environ["QUERY_STRING"] = query
    environ["REQUEST_URI"] = environ["RAW_URI"] = url
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["SERVER_NAME"] = server_name
    environ["SERVER_PORT"] = server_port
    environ["HTTP_HOST"] = server_name if server_port == "80" else f"{server_name}:{server_port}"
    environ["wsgi.input"] = io.BytesIO(body)
    environ["wsgi.errors"] = sys.stderr
    for name, value in headers.items():
        key = _ENVIRON_KEYS.get(name) or _environ_key(name)
        if key == "-":
            continue
        if key in environ and key not in {"CONTENT_TYPE", "HTTP_HOST"}:
            environ[key] += "," + value
        else:
            environ[key] = value
    return environ


#: What every task's environ holds; build_environ copies it and fills in the rest.
_BASE_ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "POST",
    "SCRIPT_NAME": "",
    "CONTENT_TYPE": "",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "SERVER_SOFTWARE": "im-task-local",
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_HOST": "127.0.0.1",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.input_terminated": True,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    LOCAL_DELIVERY_KEY: True,
}
_ENVIRON_KEYS: dict[str, str] = {}  # header name -> environ key ("-": not passed on), for the names seen so far
_MAX_ENVIRON_KEYS = 1024


def _environ_key(name: str) -> str:
    """The environ key of a header (``HTTP_*``, or ``CONTENT_TYPE``), or ``"-"`` for one the server sets itself."""
    key = name.upper().replace("-", "_")
    if key in {"CONTENT_LENGTH", "HOST"}:
        key = "-"
    elif key != "CONTENT_TYPE":
        key = "HTTP_" + key
    if len(_ENVIRON_KEYS) < _MAX_ENVIRON_KEYS:
        _ENVIRON_KEYS[name] = key
    return key


class _TracebackCatcher(PassiveHandler):
    """Keeps the traceback the endpoint logs while a task is delivered in process, on the delivering thread.

    The endpoint answers with a short plain-text body, never a traceback; it
    logs the exception that decided the outcome (with ``exc_info``) on the
    thread that runs the task, which for an in-process delivery is the
    delivering one. This handler keeps it for the task's last error. Being
    passive, it does not change where records go: with no handler of the
    app's, Python still prints warnings on stderr.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()  # .caught: the list a delivery on this thread keeps the traceback in

    def keep(self, record: logging.LogRecord) -> None:
        """Keeps the traceback of ``record`` when this thread is catching."""
        caught: list[str] | None = getattr(self.local, "caught", None)
        if caught is not None and record.exc_info and record.exc_info[0] is not None:
            caught[:] = [record.getMessage() + "\n" + "".join(traceback.format_exception(*record.exc_info))]


_catcher = _TracebackCatcher()
logging.getLogger("im_task").addHandler(_catcher)


class WSGIDelivery:
    """Delivers tasks by calling a WSGI application in this process.

    The response is read as a server would: the status from
    ``start_response``, the body iterable consumed and closed. An exception
    escaping the application is a 500. As nothing can interrupt the call, an
    answer that comes after the deadline counts as no answer.

    Args:
        app: The WSGI application.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __repr__(self) -> str:
        return f"WSGIDelivery({self.app!r})"

    def deliver(self, url: str, body: bytes, headers: Mapping[str, str], deadline: float) -> Outcome:
        """Calls the application with the task's request.

        Args:
            url: Path and query of the task.
            body: The body.
            headers: Every header to send.
            deadline: Seconds the answer may take.

        Returns:
            The outcome.
        """
        start = time.monotonic()
        environ = build_environ(url, body, headers)
        status_line: list[str] = []
        outcome: list[str] = []
        start_of_body = bytearray()

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status_line[:] = [status]
            outcome[:] = [value for name, value in response_headers if name.lower() == OUTCOME_HEADER.lower()][:1]
            return _discard

        caught: list[str] = []
        catching = _catcher.local
        catching.caught = caught  # the endpoint's traceback, if it logs one on this thread (see _TracebackCatcher)
        try:
            try:
                result: Iterable[bytes] = self.app(environ, start_response)
                try:
                    for chunk in result:
                        if len(start_of_body) < _MAX_DETAIL:
                            start_of_body += chunk[: _MAX_DETAIL - len(start_of_body)]
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            finally:
                catching.caught = None
        except Exception as exc:
            logger.exception("The WSGI application raised while handling task %s", url)
            return Outcome(
                500, _header_safe(f"UNHANDLED_EXCEPTION: {type(exc).__name__}"), detail=traceback.format_exc()
            )
        if time.monotonic() - start > deadline:
            return _deadline_exceeded(deadline)
        if not status_line:
            return Outcome(500, "INVALID_RESPONSE: start_response was not called")
        code, _, reason = status_line[0].partition(" ")
        try:
            status = int(code)
        except ValueError:
            return Outcome(500, _header_safe(f"INVALID_RESPONSE: bad status {status_line[0]!r}"))
        answered = _failure_for_status(status, reason, outcome[0] if outcome else None, bytes(start_of_body))
        if caught and answered.detail is not None:  # the endpoint's traceback says more than its one-line body
            return dataclasses.replace(answered, detail=f"{answered.detail}\n{caught[0]}")
        return answered

    def close(self) -> None:
        """Nothing to release."""


def _deadline_exceeded(deadline: float) -> Outcome:
    return Outcome(None, DEADLINE_EXCEEDED, detail=f"No answer within the dispatch deadline of {deadline:g} s.")


def _connection_failed(base_url: str, exc: BaseException) -> Outcome:
    reason = f"{exc or type(exc).__name__}"
    return Outcome(None, _header_safe(f"CONNECTION_FAILED: {reason}"), detail=f"Could not reach {base_url}: {reason}")


def _discard(data: bytes) -> None:
    """The ``write`` callable of ``start_response``: the body is not kept."""
