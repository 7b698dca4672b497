"""Runs the demo against one framework's app: serve it, start every scenario, watch the tasks, check the outcomes.

The app is served by a real WSGI server on 127.0.0.1, and the embedded local
queue (in a temporary directory, with short retry backoffs) delivers the
tasks to it over HTTP, as Cloud Tasks would. The scenarios are started
through the app's own ``POST /scenarios/<name>`` routes, so each framework
shows how a view enqueues a task.
"""

from __future__ import annotations

import http.client
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from demo_kit import outcomes
from demo_kit.outcomes import Counts
from demo_kit.scenarios import Scenario, catalog
from im_task import configure
from im_task.retry import RetryPolicy
from im_task.testing import serve_wsgi
from im_task.transports import LocalTransport

__all__ = ["FAST_RETRIES", "Check", "MakeApp", "run"]

#: Retries come quickly in the demo: 0.2 s, then 0.4 s, ... at most 1 s apart.
FAST_RETRIES = RetryPolicy(min_backoff=0.2, max_backoff=1.0, max_attempts=5)

#: Makes the app to serve, given the demo's temporary data directory (for im-task's ``data_dir``).
MakeApp = Callable[[Path], Callable[..., Any]]

#: Run once the queue is idle; returns a problem to report, or None.
Check = Callable[[], "str | None"]


def run(
    make_app: MakeApp,
    *,
    title: str,
    timeout: float = 60.0,
    extra: Sequence[Scenario] = (),
    checks: Sequence[Check] = (),
) -> int:
    """Runs the demo and prints each task as it runs, then a summary table.

    Args:
        make_app: Makes the WSGI app, given a fresh data directory. The app
            must serve ``POST /scenarios/<name>`` for every scenario (answering
            202) and the im-task endpoint.
        title: What is served, for people: e.g. ``"the Flask demo app"``.
        timeout: Most seconds to wait for every expected outcome.
        extra: The app's own scenarios, started and checked after the shared ones.
        checks: More checks, made once the queue is idle.

    Returns:
        0 when every scenario showed what was expected, 1 otherwise.

    Raises:
        TypeError: If ``make_app`` or a check is not callable.
        ValueError: For an empty ``title`` or a ``timeout`` that is not a positive number.
    """
    if not callable(make_app):
        raise TypeError("make_app must be a callable taking the data directory and returning a WSGI app")
    if not isinstance(title, str) or not title:
        raise ValueError("title must say what is served, e.g. 'the Flask demo app'")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if not all(callable(check) for check in checks):
        raise TypeError("every check must be a callable without arguments returning a problem or None")
    scenarios = catalog(extra)
    with _demo_logging():
        return _run(make_app, title, float(timeout), scenarios, checks)


class _ShortTracebacks(logging.Formatter):
    """Shows only the last line of a traceback: the demo's failures are on purpose."""

    def formatException(self, ei: Any) -> str:
        return "    " + super().formatException(ei).strip().splitlines()[-1]


class _SayHandler(logging.Handler):
    """Prints log records with :func:`demo_kit.outcomes.say`, between the tasks' lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            outcomes.say(self.format(record))
        except Exception:  # logging must not break the demo
            self.handleError(record)


@contextmanager
def _demo_logging() -> Iterator[None]:
    handler = _SayHandler()
    handler.setFormatter(_ShortTracebacks("  [log] %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("im_task")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _run(
    make_app: MakeApp, title: str, timeout: float, scenarios: Mapping[str, Scenario], checks: Sequence[Check]
) -> int:
    outcomes.reset()
    started = time.monotonic()
    expected = {name: scenario.expected for name, scenario in scenarios.items()}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="im-task-demo-") as data_dir:
        # No secret is configured: in development im-task makes one in the data directory.
        app = make_app(Path(data_dir))
        with serve_wsgi(app) as base_url:
            outcomes.say(f"Serving {title} at {base_url}; the local queue delivers to it over HTTP.\n")
            # The queue needs the server's URL, known only now; configure() wins over the app's settings.
            queue = LocalTransport(Path(data_dir) / "demo-queue.sqlite3", target=base_url, default_policy=FAST_RETRIES)
            configure(transport=queue)
            try:
                for name in scenarios:
                    status = _post(base_url, f"/scenarios/{name}")
                    outcomes.say(f"  POST /scenarios/{name} -> {status}")
                    if status != 202:
                        problems.append(f"POST /scenarios/{name} answered {status}, not 202")
                outcomes.say("")
                finished = outcomes.wait_until(lambda: _all_seen(expected), timeout)
                if not finished:
                    problems.append(f"not every outcome was seen within {timeout:g}s")
                # Then let the queue drain, so that an extra attempt would show.
                elif not queue.join(timeout=max(timeout - (time.monotonic() - started), 5.0), scheduled=True):
                    problems.append("the queue did not drain in time")
                else:
                    problems += [problem for check in checks if (problem := check()) is not None]
                seen = outcomes.counts(expected)
                stats = queue.stats()
            finally:
                configure(transport=None)
                queue.close()
    elapsed = time.monotonic() - started
    return _report(
        expected, seen, problems, f"local queue: {stats.done} tasks done, {stats.retried} retries; {elapsed:.1f}s"
    )


def _all_seen(expected: Mapping[str, Counts]) -> bool:
    seen = outcomes.counts(expected)
    return all(seen[name].covers(want) for name, want in expected.items())


def _post(base_url: str, path: str) -> int:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request("POST", path, body=b"")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _report(expected: Mapping[str, Counts], seen: Mapping[str, Counts], problems: list[str], footer: str) -> int:
    print(f"\n{'scenario':<19}{'expected':<20}{'seen':<20}result")
    print("-" * 65)
    missing = []
    for name, want in expected.items():
        got = seen[name]
        ok = got == want
        if not ok:
            missing.append(f"{name} (expected {want.describe()}, saw {got.describe()})")
        print(f"{name:<19}{want.describe():<20}{got.describe():<20}{'ok' if ok else 'MISSING'}")
    print("-" * 65)
    print(footer)
    if missing or problems:
        print("\nFAILED: " + "; ".join(problems + missing))
        return 1
    print("\nEvery scenario ran as expected.")
    return 0
