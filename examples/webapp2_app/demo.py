"""The webapp2 demo: serve the app, queue every scenario's task, watch them run, check the outcomes.

The app is served by a real WSGI server on 127.0.0.1, and the embedded
local queue (in a temporary directory, with short retry backoffs) delivers
the tasks to it over HTTP, as Cloud Tasks would. Run it with
``python examples/run_demo.py webapp2`` (or ``nox -s demo -- webapp2``).
"""

from __future__ import annotations

import http.client
import logging
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from im_task import configure
from im_task.retry import RetryPolicy
from im_task.testing import serve_wsgi
from im_task.transports import LocalTransport
from webapp2_app import outcomes
from webapp2_app.app import make_app
from webapp2_app.tasks import FAN_OUT_DEPTH, SCENARIOS

__all__ = ["EXPECTED", "Expectation", "run"]

#: Retries come quickly in the demo: 0.2 s, then 0.4 s, ... at most 1 s apart.
FAST_RETRIES = RetryPolicy(min_backoff=0.2, max_backoff=1.0, max_attempts=5)


@dataclass(frozen=True)
class Expectation:
    """How many successful and failed attempts a scenario should record.

    Attributes:
        runs: Attempts that succeeded.
        failures: Attempts that failed on purpose.
    """

    runs: int
    failures: int = 0

    def describe(self) -> str:
        """E.g. ``"1 failed, 1 ran"``."""
        parts = [f"{self.failures} failed"] if self.failures else []
        if self.runs or not parts:
            parts.append(f"{self.runs} ran")
        return ", ".join(parts)


#: What every scenario must show before the demo passes.
EXPECTED: dict[str, Expectation] = {
    "closure": Expectation(runs=1),
    "fan-out": Expectation(runs=2**FAN_OUT_DEPTH),
    "retries": Expectation(runs=1, failures=1),
    "permanent-failure": Expectation(runs=0, failures=1),
    "lambda": Expectation(runs=1),
}


class _ShortTracebacks(logging.Formatter):
    """Shows only the last line of a traceback: the demo's failures are on purpose."""

    def formatException(self, ei: object) -> str:
        text = super().formatException(ei)  # type: ignore[arg-type]
        return "    " + text.strip().splitlines()[-1]


def _seen() -> dict[str, Expectation]:
    runs: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for event in outcomes.snapshot():
        (runs if event.ok else failures)[event.scenario] += 1
    return {name: Expectation(runs[name], failures[name]) for name in EXPECTED}


def _all_seen() -> bool:
    seen = _seen()
    return all(seen[name].runs >= want.runs and seen[name].failures >= want.failures for name, want in EXPECTED.items())


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


def run(timeout: float = 60.0) -> int:
    """Runs the demo.

    Args:
        timeout: Most seconds to wait for every expected outcome.

    Returns:
        0 when every scenario showed what was expected, 1 otherwise.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_ShortTracebacks("  [log] %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("im_task")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        return _run(timeout)
    finally:
        logger.removeHandler(handler)


def _run(timeout: float) -> int:
    outcomes.reset()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="im-task-webapp2-demo-") as data_dir:
        # No secret is configured: in development im-task makes one in the data directory.
        app = make_app({"data_dir": data_dir})
        with serve_wsgi(app) as base_url:
            print(f"Serving the webapp2 demo app at {base_url}; the local queue delivers to it over HTTP.\n")
            # The queue needs the server's URL, known only now; configure() wins over app.config.
            queue = LocalTransport(Path(data_dir) / "demo-queue.sqlite3", target=base_url, default_policy=FAST_RETRIES)
            configure(transport=queue)
            try:
                for name in SCENARIOS:
                    status = _post(base_url, f"/scenarios/{name}")
                    print(f"  POST /scenarios/{name} -> {status}")
                print()
                finished = outcomes.wait_until(_all_seen, timeout)
                idle = False
                if finished:  # then wait for the queue to drain, so that an extra attempt would show
                    idle = queue.join(timeout=max(timeout - (time.monotonic() - started), 5.0), scheduled=True)
                seen = _seen()
                stats = queue.stats()
            finally:
                configure(transport=None)
                queue.close()
    problems = [] if finished else [f"not every outcome was seen within {timeout:g}s"]
    if finished and not idle:
        problems.append("the queue did not drain in time")
    return _report(seen, problems, stats.done, stats.retried, time.monotonic() - started)


def _report(seen: dict[str, Expectation], problems: list[str], done: int, retried: int, elapsed: float) -> int:
    print(f"\n{'scenario':<19}{'expected':<20}{'seen':<20}result")
    print("-" * 65)
    missing = []
    for name, want in EXPECTED.items():
        got = seen[name]
        ok = got == want
        if not ok:
            missing.append(f"{name} (expected {want.describe()}, saw {got.describe()})")
        print(f"{name:<19}{want.describe():<20}{got.describe():<20}{'ok' if ok else 'MISSING'}")
    print("-" * 65)
    print(f"local queue: {done} tasks done, {retried} retries; {elapsed:.1f}s")
    if missing or problems:
        print("\nFAILED: " + "; ".join(problems + missing))
        return 1
    print("\nEvery scenario ran as expected.")
    return 0
