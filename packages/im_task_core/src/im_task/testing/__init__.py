"""Helpers for testing applications that use im-task.

:func:`isolated_settings` gives a test a clean process-wide configuration and
puts the previous one back afterwards. :func:`serve_wsgi` runs a WSGI
application on a real, threaded HTTP server on a free local port, so that
tasks travel over real HTTP in tests (the local queue with a URL target,
Cloud Tasks emulators, ...). :func:`serve_local_queue` joins the two: a local
queue in a file of your choice delivering over HTTP to a served application.
:func:`queue_delivery_headers` gives the headers a queue sends with one
delivery of a recorded task, signed as im-task's own queues sign them, for
tests that POST it to an application's test client themselves.
Standard library only: nothing here imports pytest. The pytest fixtures built
on these helpers are in :mod:`im_task.testing.plugin`, which installing
im-task registers with pytest.

Example:
    >>> from im_task.testing import isolated_settings, serve_wsgi
    >>> with isolated_settings(tmp_path, secret="a-test-secret-of-32-or-more-bytes"):  # doctest: +SKIP
    ...     with serve_wsgi(app) as base_url:
    ...         transport = LocalTransport(tmp_path / "q.sqlite3", target=base_url)
"""

from __future__ import annotations

import io
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from im_task.config import configure, get_keyring
from im_task.deliveryproof import Attempt, proof_headers
from im_task.headers import APPENGINE, CLOUDTASKS, delivery_headers, make_task_headers
from im_task.keys import Keyring
from im_task.names import TASK_NAME, TASK_NAME_RULE
from im_task.state import STATE
from im_task.transports.base import TaskRequest

if TYPE_CHECKING:
    from im_task.transports.local import LocalTransport

__all__ = ["ServedQueue", "isolated_settings", "queue_delivery_headers", "serve_local_queue", "serve_wsgi"]

logger = logging.getLogger("im_task.testing")

WSGIApp = Callable[..., Any]


@contextmanager
def isolated_settings(data_dir: str | os.PathLike[str], **settings: Any) -> Iterator[None]:
    """Runs the body with a clean im-task configuration, and cleans up after it.

    Inside: no ``IM_TASK_*`` (nor ``GAE_ENV``, ``K_SERVICE``) environment
    variables, no settings from earlier ``configure()`` calls or adapters, no
    registered local target or transaction binders, no warm-up done, the
    default task route, and ``configure(data_dir=data_dir, **settings)``.
    Afterwards the environment variables and the whole process-wide state
    (:data:`im_task.state.STATE`: settings, transport, route, local target,
    binders, warm-up) are put back; a transport made from a setting inside is closed.

    Args:
        data_dir: The local data directory for the test (e.g. pytest's ``tmp_path``).
        **settings: More settings for :func:`~im_task.configure`, e.g.
            ``secret=`` or ``transport=RecordingTransport()``.

    Yields:
        Nothing; the configuration is in force inside the ``with`` block.

    Example:
        >>> @pytest.fixture(autouse=True)  # doctest: +SKIP
        ... def clean_im_task(tmp_path):
        ...     with isolated_settings(tmp_path, secret="a-test-secret-of-32-or-more-bytes"):
        ...         yield
    """
    saved_environ = {name: value for name, value in os.environ.items() if _configures_im_task(name)}
    snapshot = STATE.snapshot()
    for name in saved_environ:
        del os.environ[name]
    STATE.clear()
    try:
        configure(data_dir=Path(data_dir), **settings)
        yield
    finally:
        STATE.restore(snapshot)
        for name in [name for name in os.environ if _configures_im_task(name)]:
            del os.environ[name]
        os.environ.update(saved_environ)


def queue_delivery_headers(
    request: TaskRequest,
    *,
    retry_count: int = 0,
    execution_count: int | None = None,
    task_name: str | None = None,
    family: str = APPENGINE,
    keyring: Keyring | None = None,
) -> dict[str, str]:
    """The headers a queue sends with one delivery of ``request``, proof included, as the local queue sends them.

    The endpoint trusts a delivery's retry count (against ``task_retry_limit``) only from a caller that proved
    it is the queue; im-task's own queues sign each delivery (:mod:`im_task.deliveryproof`), and so does this.

    Args:
        request: The task, e.g. one a :class:`~im_task.transports.RecordingTransport` recorded.
        retry_count: Attempts before this one.
        execution_count: Earlier attempts that got an answer other than 5xx; ``retry_count`` when None.
        task_name: The task's name; ``request.name``, or ``"task-1"`` when it has none.
        family: :data:`~im_task.headers.APPENGINE` or :data:`~im_task.headers.CLOUDTASKS`.
        keyring: The keys to sign with; the keyring in force when None.

    Returns:
        The task's own headers, then the queue's, then the proof.

    Raises:
        ValueError: ``request`` is not a ``TaskRequest``, ``task_name`` not a task name, a count not a whole
            number >= 0, ``keyring`` not a ``Keyring``, or the family unknown.
        ConfigurationError: No keyring is given and none can be made from the settings.

    Example:
        >>> request = recorder.requests[0]  # doctest: +SKIP
        >>> headers = queue_delivery_headers(request, retry_count=3)  # doctest: +SKIP
        >>> client.post(request.url, data=request.body, headers=headers)  # doctest: +SKIP
    """
    if not isinstance(request, TaskRequest):
        raise ValueError(f"request must be a TaskRequest (e.g. one a RecordingTransport recorded), not {request!r}.")
    if task_name is not None and (not isinstance(task_name, str) or not TASK_NAME.fullmatch(task_name)):
        raise ValueError(f"task_name must be None or a task name of {TASK_NAME_RULE}, not {task_name!r}.")
    if keyring is not None and not isinstance(keyring, Keyring):
        raise ValueError(f"keyring must be an im_task.keys.Keyring or None, not {type(keyring).__name__}.")
    executions = retry_count if execution_count is None else execution_count
    for label, count in (("retry_count", retry_count), ("execution_count", executions)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"{label} must be a whole number >= 0, not {count!r}.")
    if family not in (APPENGINE, CLOUDTASKS):
        raise ValueError(f"family must be {APPENGINE!r} or {CLOUDTASKS!r}, not {family!r}.")
    name = task_name or request.name or "task-1"
    headers = delivery_headers(
        request.headers,
        make_task_headers(
            queue_name=request.queue,
            task_name=name,
            retry_count=retry_count,
            execution_count=executions,
            family=family,
        ),
    )
    attempt = Attempt(request.queue, name, retry_count, executions)
    headers.update(proof_headers(attempt, request.body, keyring or get_keyring()))
    return headers


def _configures_im_task(variable: str) -> bool:
    return variable.startswith("IM_TASK_") or variable in ("GAE_ENV", "K_SERVICE")


class _LogStream(io.TextIOBase):
    """``wsgi.errors`` and the server's error stream: lines go to the ``im_task.testing`` logger."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._parts.append(text)
        if text.endswith("\n"):
            self.flush()
        return len(text)

    def flush(self) -> None:
        message = "".join(self._parts).rstrip()
        self._parts.clear()
        if message:
            logger.warning("%s", message)


class _Handler(WSGIRequestHandler):
    """wsgiref's handler, logging to ``im_task.testing`` instead of printing."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def get_stderr(self) -> io.TextIOBase:
        return _LogStream()

    def address_string(self) -> str:
        return str(self.client_address[0])  # no reverse DNS lookups


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGI server answering each connection on its own daemon thread."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (getfqdn), which can be slow: skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("Error while serving %s", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


@contextmanager
def serve_wsgi(app: WSGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serves a WSGI application over HTTP on a background thread.

    The server is threaded (one daemon thread per connection, so concurrent
    requests are fine), speaks HTTP/1.0 (one request per connection), logs to
    the ``im_task.testing`` logger instead of printing, and is shut down when
    the ``with`` block ends, however it ends.

    Args:
        app: The WSGI application.
        host: Address to listen on; ``"::1"`` and other IPv6 addresses work too.
        port: Port to listen on; 0 picks a free one.

    Yields:
        The base URL, e.g. ``"http://127.0.0.1:54321"``.

    Example:
        >>> with serve_wsgi(app) as url:  # doctest: +SKIP
        ...     urllib.request.urlopen(url + "/ping").read()
    """
    server_class = _Server6 if ":" in host else _Server
    server = server_class((host, port), _Handler)
    server.set_app(app)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="im-task-test-server", daemon=True
    )
    thread.start()
    bound_port = server.server_address[1]
    netloc = f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"
    try:
        yield f"http://{netloc}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class ServedQueue:
    """A local queue delivering over real HTTP to a WSGI application served on 127.0.0.1.

    Made by :func:`serve_local_queue` (and by the ``im_task_local_queue``
    pytest fixture).

    Attributes:
        transport: The :class:`~im_task.transports.LocalTransport`.
        base_url: The served application's base URL, e.g. ``"http://127.0.0.1:54321"``.
        app: The WSGI application tasks are delivered to.
    """

    def __init__(self, transport: LocalTransport, base_url: str, app: WSGIApp) -> None:
        self.transport = transport
        self.base_url = base_url
        self.app = app

    def join(self, timeout: float = 30.0, *, scheduled: bool = False) -> None:
        """Waits until no task is due or being delivered, including tasks those tasks enqueue.

        Args:
            timeout: Most seconds to wait.
            scheduled: Also wait for tasks due later (countdowns, ``eta``, retries after a backoff).

        Raises:
            TimeoutError: Tasks were still due or being delivered after ``timeout``
                seconds; the message gives the queue's counts.
        """
        if not self.transport.join(timeout, scheduled=scheduled):
            raise TimeoutError(
                f"The local queue at {self.transport.path} still had tasks to deliver after {timeout}s: "
                f"{self.transport.stats()}. Give join() a longer timeout, or check that the tasks' URLs are "
                f"served by {self.app!r}."
            )

    def __repr__(self) -> str:
        return f"ServedQueue({str(self.transport.path)!r}, base_url={self.base_url!r})"


@contextmanager
def serve_local_queue(app: WSGIApp, path: str | os.PathLike[str], **options: Any) -> Iterator[ServedQueue]:
    """Serves ``app`` over HTTP and yields a local queue delivering to it.

    It does not install the queue: pass ``queue.transport`` to
    :func:`~im_task.configure` for tasks to be sent to it. On exit the queue
    is closed (deliveries in flight finish) and then the server is stopped,
    however the block ends.

    Args:
        app: The WSGI application tasks are delivered to, e.g. a
            :class:`~im_task.wsgi.TaskWSGIApp` or a Flask app set up with ``ImTask``.
        path: The queue's SQLite file.
        **options: More arguments for :class:`~im_task.transports.LocalTransport`
            (``concurrency``, ``queues``, ...).

    Yields:
        The :class:`ServedQueue`.

    Example:
        >>> with serve_local_queue(TaskWSGIApp(), tmp_path / "q.sqlite3") as queue:  # doctest: +SKIP
        ...     configure(transport=queue.transport)
        ...     send_welcome("ada@example.com")
        ...     queue.join()
    """
    from im_task.transports.local import LocalTransport

    with serve_wsgi(app) as base_url, LocalTransport(path, target=base_url, **options) as transport:
        yield ServedQueue(transport, base_url, app)
