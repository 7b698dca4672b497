"""WSGI apps that record each request or measure concurrency, and task requests, for the local-queue tests."""

from __future__ import annotations

import threading
import time
from typing import Any

from im_task.transports.base import TaskRequest


def headers_of(environ: dict[str, Any]) -> dict[str, str]:
    """The request headers of a WSGI environ, by lower-case name (``content-type`` included)."""
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return headers


class Recorder:
    """A WSGI app that records each request and answers 200, or what ``statuses`` scripts.

    Each call in ``calls`` is a dict with ``path``, ``query``, ``body``, ``time``
    (monotonic, when recorded), ``headers`` (see ``headers_of``) and ``env`` (the
    WSGI environ). ``entered`` is set as the first request arrives.

    Args:
        statuses: A list, used in turn by whichever request comes next (so only for
            one task in flight at a time), or a dict from task name to status.
            A 3xx answer carries ``Location: /elsewhere``.
        delay: Seconds each request takes to answer.
        record_after_delay: Record a request only once its delay is over, so a
            recorded call is a finished one; by default it is recorded on arrival.
    """

    def __init__(
        self,
        statuses: list[int] | dict[str, int] | None = None,
        delay: float = 0.0,
        *,
        record_after_delay: bool = False,
    ) -> None:
        self.calls: list[dict[str, Any]] = []
        self.by_name = dict(statuses) if isinstance(statuses, dict) else {}
        self.statuses = list(statuses) if isinstance(statuses, list) else []
        self.delay = delay
        self.record_after_delay = record_after_delay
        self.lock = threading.Lock()
        self.entered = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        """Records the request, waits ``delay`` (before or after) and answers with the scripted status."""
        self.entered.set()
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if self.record_after_delay:
            time.sleep(self.delay)
        status = self._record(environ, body)
        if not self.record_after_delay:
            time.sleep(self.delay)
        extra = [("Location", "/elsewhere")] if 300 <= status < 400 else []
        start_response(f"{status} Status", [("Content-Type", "text/plain"), *extra])
        return [b"answer"]

    def _record(self, environ: dict[str, Any], body: bytes) -> int:
        """Appends the call to ``calls``; returns the status to answer it with."""
        with self.lock:
            self.calls.append(
                {
                    "path": environ["PATH_INFO"],
                    "query": environ.get("QUERY_STRING", ""),
                    "body": body,
                    "time": time.monotonic(),
                    "headers": headers_of(environ),
                    "env": environ,
                }
            )
            status = self.by_name.get(environ.get("HTTP_X_APPENGINE_TASKNAME", ""))
            if status is None:
                status = self.statuses.pop(0) if self.statuses else 200
            return status

    def names(self) -> list[str]:
        """The task names of the recorded calls, in the order they were recorded."""
        with self.lock:
            return [c["env"]["HTTP_X_APPENGINE_TASKNAME"] for c in self.calls]


def request(name: str | None = None, **fields: Any) -> TaskRequest:
    """A task request for the default queue to ``/_ah/task/mod/fn``; ``fields`` override any ``TaskRequest`` field."""
    values: dict[str, Any] = {
        "queue": "default",
        "url": "/_ah/task/mod/fn",
        "body": b"payload",
        "headers": {"Content-Type": "application/octet-stream"},
        "name": name,
    }
    values.update(fields)
    return TaskRequest(**values)


class ConcurrencyProbe:
    """A WSGI app that measures how many deliveries it serves at once (``peak``).

    Args:
        hold: Seconds each request stays in flight.
        barrier: If given, each request waits at it, so requests pass only
            when that many are in flight together.
    """

    def __init__(self, hold: float = 0.01, barrier: threading.Barrier | None = None) -> None:
        self.hold = hold
        self.barrier = barrier
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.barrier is not None:
                self.barrier.wait()
            time.sleep(self.hold)
        finally:
            with self._lock:
                self.active -= 1
        start_response("200 OK", [])
        return []
