"""The Django demo: serve the project, start every scenario, watch the tasks run, check the outcomes.

The project is served by a real WSGI server on 127.0.0.1 and the embedded
local queue (in a temporary directory, with short retry backoffs) delivers
the tasks to the project in process, as it does under ``runserver`` with no
configuration at all. Run it with ``python examples/run_demo.py django``
(or ``nox -s demo``).
"""

from __future__ import annotations

import http.client
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django_project import outcomes

__all__ = ["EXPECTED", "Expectation", "run"]

SETTINGS_MODULE = "django_project.settings"


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
        """E.g. ``"2 failed, 1 ran"``."""
        parts = [f"{self.failures} failed"] if self.failures else []
        if self.runs or not parts:
            parts.append(f"{self.runs} ran")
        return ", ".join(parts)


#: What every scenario must show before the demo passes (fan-out: 2**3 leaves).
EXPECTED: dict[str, Expectation] = {
    "closure": Expectation(runs=1),
    "fan-out": Expectation(runs=2**3),
    "function-argument": Expectation(runs=1),
    "countdown": Expectation(runs=1),
    "retries": Expectation(runs=1, failures=2),
    "permanent-failure": Expectation(runs=0, failures=1),
    "lambda": Expectation(runs=1),
    "transactional": Expectation(runs=1),  # the rolled-back order's task must never run
}


class _ShortTracebacks(logging.Formatter):
    """Shows only the last line of a traceback: the demo's failures are on purpose."""

    def formatException(self, ei: object) -> str:
        text = super().formatException(ei)  # type: ignore[arg-type]
        return "    " + text.strip().splitlines()[-1]


def run(timeout: float = 60.0) -> int:
    """Runs the demo.

    Django is set up once per process with one settings module; when this
    process already has Django set up (a test run, a second call), the demo
    runs in a fresh Python process instead.

    Args:
        timeout: Most seconds to wait for every expected outcome.

    Returns:
        0 when every scenario showed what was expected, 1 otherwise.
    """
    from django.conf import settings

    if settings.configured:
        return _run_in_new_process(timeout)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_ShortTracebacks("  [log] %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("im_task")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="im-task-django-demo-") as data_dir:
            os.environ["IM_TASK_DJANGO_DEMO_DIR"] = data_dir
            os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
            return _run(timeout)
    finally:
        logger.removeHandler(handler)


def _run_in_new_process(timeout: float) -> int:
    examples = str(Path(__file__).resolve().parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {examples!r}); from django_project.demo import run; sys.exit(run({timeout!r}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "IM_TASK_DJANGO_DEMO_DIR")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout + 60, check=False
    )
    sys.stdout.write(done.stdout + done.stderr)
    return done.returncode


def _run(timeout: float) -> int:
    import django
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    from im_task import configure
    from im_task.retry import RetryPolicy
    from im_task.testing import serve_wsgi
    from im_task.transports import LocalTransport

    django.setup()
    call_command("migrate", verbosity=0)
    from django_project.tasks import SCENARIOS
    from im_task_django.models import OutboxTask

    fast_retries = RetryPolicy(min_backoff=0.2, max_backoff=1.0, max_attempts=5)  # 0.2 s, 0.4 s, ... 1 s apart
    outcomes.reset()
    started = time.monotonic()
    with serve_wsgi(get_wsgi_application()) as base_url:
        print(f"Serving the Django demo project at {base_url}; the local queue delivers to it in process.\n")
        # With no target, the local queue delivers to the WSGI application im_task_django registered:
        # the project itself. Only the quick retries need configuring.
        queue = LocalTransport(default_policy=fast_retries)
        configure(transport=queue)
        try:
            for name in SCENARIOS:
                print(f"  POST /scenarios/{name} -> {_post(base_url, f'/scenarios/{name}')}")
            print()
            finished = outcomes.wait_until(lambda: _all_seen(outcomes.snapshot()), timeout)
            idle = False
            if finished:  # then wait for the queue to drain, so that an extra attempt would show
                idle = queue.join(timeout=max(timeout - (time.monotonic() - started), 5.0), scheduled=True)
            seen = _seen(outcomes.snapshot())
            stats = queue.stats()
            left_in_outbox = OutboxTask.objects.count()
        finally:
            configure(transport=None)
            queue.close()
    problems = [] if finished else [f"not every outcome was seen within {timeout:g}s"]
    if finished and not idle:
        problems.append("the queue did not drain in time")
    if left_in_outbox:
        problems.append(f"{left_in_outbox} transactional task(s) left in the outbox")
    return _report(seen, problems, stats.done, stats.retried, time.monotonic() - started)


def _seen(events: list[outcomes.Event]) -> dict[str, Expectation]:
    runs: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for event in events:
        (runs if event.ok else failures)[event.scenario] += 1
    return {name: Expectation(runs[name], failures[name]) for name in EXPECTED}


def _all_seen(events: list[outcomes.Event]) -> bool:
    seen = _seen(events)
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
