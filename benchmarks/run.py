"""im-task benchmarks: each row is a ratio against a baseline measured in the same process.

Run ``python benchmarks/run.py`` (or ``nox -s bench``); ``--quick`` for a
smoke run. Subject and baseline are measured in turns (baseline, subject,
baseline, ...) so that a noisy machine slows both alike, and the best run of
each is kept, as :mod:`timeit` advises. ``docs/benchmarks.md`` explains the
rows.
"""

from __future__ import annotations

import argparse
import gc
import io
import itertools
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.test import EnvironBuilder

# The project's test support (the emulator's venv and process) is importable by name, as in the tests.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

import bench_tasks
import im_task.config
from im_task import configure
from im_task.headers import make_task_headers
from im_task.runtime import get_transport
from im_task.transports import LocalTransport, RecordingTransport, TaskRequest
from im_task.transports.local import QueueLimits
from im_task_flask import ImTask

SECRET = "benchmark-secret-0123456789abcdef"
ARGS: tuple[Any, ...] = (1, "two")
KWARGS: dict[str, Any] = {"c": 3.0}


@dataclass(frozen=True)
class Profile:
    """How much work each benchmark does.

    Attributes:
        number: Calls per timed batch (rows 1 and 2).
        repeats: Timed batches of each side, interleaved.
        tasks: Tasks through the local queue (row 3).
        queue_repeats: Runs of the local queue benchmark (and of each side of rows 3d-3e).
        huey_tasks: Tasks through the local queue and huey (rows 3d-3e).
        imports: Interpreters started for each side of the import-cost rows.
        cloud_calls: Calls per timed batch through the Cloud Tasks emulator (rows 5a-5b).
        cloud_repeats: Timed batches (rows 5a-5b) and runs (rows 5c-5d) of each side, interleaved.
        cloud_tasks: Tasks per run of the bulk and async rows (5c-5f).
        latency_calls: Sequential calls per run of the baseline of rows 5e-5f (a round trip each).
        latency_repeats: Runs of each side of rows 5e-5f.
    """

    number: int
    repeats: int
    tasks: int
    queue_repeats: int
    imports: int
    huey_tasks: int
    cloud_calls: int
    cloud_repeats: int
    cloud_tasks: int
    latency_calls: int
    latency_repeats: int


FULL = Profile(
    number=2000, repeats=15, tasks=5000, queue_repeats=3, imports=15, huey_tasks=10_000,
    cloud_calls=500, cloud_repeats=5, cloud_tasks=1000, latency_calls=200, latency_repeats=2,
)  # fmt: skip
QUICK = Profile(
    number=100, repeats=2, tasks=200, queue_repeats=1, imports=2, huey_tasks=200,
    cloud_calls=50, cloud_repeats=1, cloud_tasks=1000, latency_calls=20, latency_repeats=1,
)  # fmt: skip
#: The local queue's rate limit in rows 3a-3e: none to speak of (Cloud Tasks' default, 500 a second, would be
#: what these rows measure).
UNLIMITED = QueueLimits(max_dispatches_per_second=1e9)
#: The round trip rows 5e-5f add between the client and the emulator, in seconds.
ROUND_TRIP = 0.010


@dataclass(frozen=True)
class Row:
    """One line of the table: a subject, its baseline, and the cost ratio."""

    name: str
    subject: str
    baseline: str
    ratio: str


# -- measuring -----------------------------------------------------------------------


def best_of_interleaved(
    subject: Callable[[], object],
    baseline: Callable[[], object],
    *,
    number: int,
    repeats: int,
    between: Callable[[], object] = lambda: None,
) -> tuple[float, float]:
    """Times ``number`` calls of each side ``repeats`` times, in turns.

    Returns:
        The best seconds per call of the subject and of the baseline.
    """
    subject_times: list[float] = []
    baseline_times: list[float] = []
    for _ in range(repeats):
        baseline_times.append(timeit.Timer(baseline).timeit(number) / number)
        between()
        subject_times.append(timeit.Timer(subject).timeit(number) / number)
        between()
    return min(subject_times), min(baseline_times)


def rss_bytes() -> int | None:
    """The resident set size of this process, where ``/proc`` tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int | None:
    """The highest resident set size this process has reached so far (``ru_maxrss``), where it is known.

    It is a high-water mark: it never goes down, so the growth it shows over a
    run is how far the run raised the process's peak, zero if it stayed below
    an earlier one.
    """
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kibibytes elsewhere


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
    return lambda data: None


def wsgi_caller(app: Any, path: str, body: bytes, headers: dict[str, str]) -> Callable[[], bytes]:
    """A function POSTing ``body`` to ``app`` in process, with an environ built once and copied per call."""
    template = EnvironBuilder(path=path, method="POST", data=body, headers=list(headers.items())).get_environ()
    start_response = _start_response

    def call() -> bytes:
        environ = template.copy()
        environ["wsgi.input"] = io.BytesIO(body)
        result: Iterable[bytes] = app(environ, start_response)
        try:
            return b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return call


def checked_status(app: Any, path: str, body: bytes, headers: dict[str, str]) -> int:
    """The status one in-process POST gets, to check a benchmark measures what it claims."""
    with app.test_client() as client:
        return int(client.post(path, data=body, headers=headers).status_code)


def micro(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def per_second(rate: float) -> str:
    return f"{rate:,.0f} tasks/s"


def mebibytes(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:,.1f} MiB"


def times(ratio: float) -> str:
    return f"{ratio:.2f}x"


# -- the app -----------------------------------------------------------------------------


def make_app() -> Flask:
    """A Flask app serving tasks, with a bare no-op POST route as the baseline."""
    app = Flask("im_task_benchmarks")

    @app.post("/noop")
    def noop() -> str:
        return ""

    ImTask(app)
    return app


@contextmanager
def configured(data_dir: Path) -> Iterator[RecordingTransport]:
    im_task.config.reset()
    recorder = RecordingTransport(max_task_size=10 * 1024 * 1024)
    configure(secret=SECRET, data_dir=data_dir, transport=recorder)
    try:
        yield recorder
    finally:
        im_task.config.reset()


# -- the rows ------------------------------------------------------------------------------


def process_cpu_seconds(code: str) -> float:
    """CPU time (user + system) of a fresh ``python -c code``, start-up included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


IMPORT_CASES = (
    ("4a. python -c 'import im_task'", "import im_task"),
    ("4b. python -c 'from im_task import task' + one @task", "from im_task import task\n@task\ndef f(): pass"),
)


def bench_import_cost(profile: Profile) -> list[Row]:
    """CPU time of starting Python and importing im-task, against doing so with Flask (goal for 4a: <= 0.25)."""
    rows = []
    for name, code in IMPORT_CASES:
        subject: list[float] = []
        baseline: list[float] = []
        for _ in range(profile.imports):
            baseline.append(process_cpu_seconds("import flask"))
            subject.append(process_cpu_seconds(code))
        best, base = min(subject), min(baseline)
        rows.append(
            Row(
                name, f"{best * 1e3:,.1f} ms CPU", f"python -c 'import flask': {base * 1e3:,.1f} ms", times(best / base)
            )
        )
    return rows


def bench_enqueue(recorder: RecordingTransport, profile: Profile) -> Row:
    """Row 1: calling a @task function (serialise, sign, build the request) against pickle.dumps."""
    call = (bench_tasks.noop_plain, ARGS, KWARGS)

    def subject() -> None:
        bench_tasks.noop(*ARGS, **KWARGS)

    def baseline() -> None:
        pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)

    subject_s, baseline_s = best_of_interleaved(
        subject, baseline, number=profile.number, repeats=profile.repeats, between=recorder.clear
    )
    return Row(
        "1. enqueue a @task call (RecordingTransport)",
        micro(subject_s),
        f"pickle.dumps of the call: {micro(baseline_s)}",
        times(subject_s / baseline_s),
    )


def task_request_for_noop(recorder: RecordingTransport) -> tuple[TaskRequest, dict[str, str]]:
    recorder.clear()
    bench_tasks.noop(*ARGS, **KWARGS)
    (request,) = recorder.requests
    recorder.clear()
    headers = {**request.headers, **make_task_headers(queue_name=request.queue, task_name="bench")}
    return request, headers


def bench_route(app: Flask, recorder: RecordingTransport, profile: Profile) -> Row:
    """Row 2: a no-op task through the Flask task route against a bare Flask no-op POST route."""
    request, headers = task_request_for_noop(recorder)
    for path in (request.url, "/noop"):
        status = checked_status(app, path, request.body, headers)
        if status != 200:
            raise RuntimeError(f"POST {path} answered {status}, not 200: the benchmark would measure a failure.")
    subject = wsgi_caller(app, request.url, request.body, headers)
    baseline = wsgi_caller(app, "/noop", request.body, headers)
    subject_s, baseline_s = best_of_interleaved(subject, baseline, number=profile.number, repeats=profile.repeats)
    return Row(
        "2. run a no-op task via the Flask route (WSGI)",
        micro(subject_s),
        f"bare Flask no-op POST route: {micro(baseline_s)}",
        times(subject_s / baseline_s),
    )


#: The adapter rows: what serves the task route, and the bare no-op POST route it is compared with.
ADAPTER_ROWS = {
    "2b": ("django", "2b. run a no-op task via the Django view (WSGI)", "bare Django no-op POST view"),
    "2c": ("webapp2", "2c. run a no-op task via the webapp2 route (WSGI)", "bare webapp2 no-op POST handler"),
    "2d": ("wsgi", "2d. run a no-op task via TaskWSGIApp (plain WSGI)", "bare WSGI no-op app"),
}


def bench_adapter(label: str, profile: Profile) -> Row:
    """Rows 2b-2d: row 2 for another adapter, measured in a process of its own (a framework sets up once).

    The child (``run.py --adapter-row LABEL``) times the task route and its
    baseline as row 2 does and prints the two costs as JSON.
    """
    _, name, baseline_name = ADAPTER_ROWS[label]
    command = [sys.executable, __file__, "--adapter-row", label, "--number", str(profile.number)]
    command += ["--repeats", str(profile.repeats)]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        NOTES.append(f"Row {label} skipped: {last}")
        return Row(name, "skipped", baseline_name, "-")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    subject_s, baseline_s = measured["subject"], measured["baseline"]
    return Row(name, micro(subject_s), f"{baseline_name}: {micro(baseline_s)}", times(subject_s / baseline_s))


def adapter_apps(label: str) -> tuple[Any, Any]:
    """The WSGI app serving the task route with ``label``'s adapter, and the one answering the bare route."""
    framework = ADAPTER_ROWS[label][0]
    if framework == "django":
        return _django_apps()
    if framework == "webapp2":
        import webapp2

        from im_task_webapp2 import routes, setup

        class Noop(webapp2.RequestHandler):  # type: ignore[misc]
            def post(self) -> None:
                pass

        app = setup(webapp2.WSGIApplication([*routes(), ("/noop", Noop)]))
        return app, app
    from im_task.wsgi import TaskWSGIApp

    def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))  # as a real app reads its body
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0")])
        return [b""]

    return TaskWSGIApp(fallback=bare), bare


def _django_apps() -> tuple[Any, Any]:
    """A Django project of one URLconf: im-task's URLs and a bare no-op view, without middleware."""
    import types

    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import HttpRequest, HttpResponse
    from django.urls import include, path
    from django.views.decorators.csrf import csrf_exempt

    @csrf_exempt
    def noop(request: HttpRequest) -> HttpResponse:
        return HttpResponse(b"")

    urlconf = types.ModuleType("im_task_bench_urls")
    urlconf.urlpatterns = [path("noop", noop), path("", include("im_task_django.urls"))]  # type: ignore[attr-defined]
    sys.modules[urlconf.__name__] = urlconf
    settings.configure(
        ROOT_URLCONF=urlconf.__name__,
        INSTALLED_APPS=["im_task_django"],
        MIDDLEWARE=[],
        ALLOWED_HOSTS=["*"],
        DATABASES={},
        USE_TZ=True,
        IM_TASK={"SECRET": SECRET, "ENVIRONMENT": "development"},
        LOGGING_CONFIG=None,
    )
    django.setup()
    app = WSGIHandler()
    return app, app


def run_adapter_row(label: str, number: int, repeats: int) -> None:
    """The child of :func:`bench_adapter`: times one adapter's task route and baseline, prints them as JSON."""
    with tempfile.TemporaryDirectory(prefix="im-task-bench-") as tmp:
        subject_app, baseline_app = adapter_apps(label)
        recorder = RecordingTransport(max_task_size=10 * 1024 * 1024)
        configure(secret=SECRET, data_dir=Path(tmp), transport=recorder)
        request, headers = task_request_for_noop(recorder)
        for app, path in ((subject_app, request.url), (baseline_app, "/noop")):
            status = wsgi_status(app, path, request.body, headers)
            if status != 200:
                raise RuntimeError(f"POST {path} answered {status}, not 200: the benchmark would measure a failure.")
        subject = wsgi_caller(subject_app, request.url, request.body, headers)
        baseline = wsgi_caller(baseline_app, "/noop", request.body, headers)
        subject_s, baseline_s = best_of_interleaved(subject, baseline, number=number, repeats=repeats)
        print(json.dumps({"subject": subject_s, "baseline": baseline_s}))


def wsgi_status(app: Any, path: str, body: bytes, headers: dict[str, str]) -> int:
    """The status one in-process WSGI POST gets."""
    statuses: list[str] = []
    environ = EnvironBuilder(path=path, method="POST", data=body, headers=list(headers.items())).get_environ()
    result = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(result)
    getattr(result, "close", lambda: None)()
    return int(statuses[0].split()[0])


@dataclass(frozen=True)
class QueueRun:
    """One pass of tasks through the local queue."""

    enqueue_seconds: float
    delivery_seconds: float
    rss_growth: int | None
    peak_rss_growth: int | None


def run_local_queue(app: Callable[..., Any], data_dir: Path, count: int) -> QueueRun:
    """Enqueues ``count`` no-op tasks on a fresh local queue, then delivers them in process to the WSGI ``app``."""
    path = data_dir / f"bench-{time.monotonic_ns()}.sqlite3"
    queue = LocalTransport(path, target=app, autostart=False, default_limits=UNLIMITED)
    configure(transport=queue)
    try:
        gc.collect()
        rss_before = rss_bytes()
        peak_before = peak_rss_bytes()
        started = time.perf_counter()
        for _ in range(count):
            bench_tasks.noop(*ARGS, **KWARGS)
        enqueued = time.perf_counter()
        queue.start()
        if not queue.join(timeout=600):
            raise RuntimeError("The local queue did not deliver the tasks within 10 minutes.")
        delivered = time.perf_counter()
        rss_after = rss_bytes()
        peak_after = peak_rss_bytes()
        done = queue.stats().done
        if done != count:
            raise RuntimeError(f"The local queue finished {done} of {count} tasks: the benchmark measured failures.")
    finally:
        configure(transport=None)
        queue.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    growth = None if rss_before is None or rss_after is None else rss_after - rss_before
    peak_growth = None if peak_before is None or peak_after is None else peak_after - peak_before
    return QueueRun(enqueued - started, delivered - enqueued, growth, peak_growth)


def bench_local_queue(app: Flask, recorder: RecordingTransport, data_dir: Path, profile: Profile) -> list[Row]:
    """Row 3: throughput and memory of the local queue delivering in process through Flask."""
    request, headers = task_request_for_noop(recorder)
    baseline_call = wsgi_caller(app, "/noop", request.body, headers)
    count = profile.tasks
    runs: list[QueueRun] = []
    baseline_times: list[float] = []
    batch = max(count // 5, 1)
    for _ in range(profile.queue_repeats):
        # The baseline's count calls in five batches, so that one slow moment spoils a fifth of a run, not all.
        baseline_times += [timeit.Timer(baseline_call).timeit(batch) / batch for _ in range(5)]
        runs.append(run_local_queue(app, data_dir, count))
    baseline_rate = 1 / min(baseline_times)
    enqueue_rate = count / min(run.enqueue_seconds for run in runs)
    delivery_rate = count / min(run.delivery_seconds for run in runs)

    tracemalloc.start()
    try:
        run_local_queue(app, data_dir, count)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    first = runs[0]
    baseline_text = f"bare Flask no-op route x{count:,}: {per_second(baseline_rate)}"
    return [
        Row(f"3a. local queue: enqueue {count:,} tasks", per_second(enqueue_rate), baseline_text,
            times(baseline_rate / enqueue_rate)),
        Row(f"3b. local queue: deliver {count:,} in process via Flask", per_second(delivery_rate), baseline_text,
            times(baseline_rate / delivery_rate)),
        Row(
            f"3c. local queue: memory for {count:,} tasks",
            f"Python heap peak {peak / 2**20:,.1f} MiB",
            f"first run: peak RSS +{mebibytes(first.peak_rss_growth)}, RSS +{mebibytes(first.rss_growth)}",
            "-",
        ),
    ]  # fmt: skip


# -- the local queue against huey ----------------------------------------------------------------------------

#: How rows 3d and 3e set up both queues, printed with them: the same durability and threads on each side.
HUEY_SETTINGS = (
    "both: one SQLite file in WAL mode with synchronous=NORMAL, a fresh file per run, tasks enqueued from this "
    "thread, then run by 8 worker threads of this process; im-task's LocalTransport(concurrency=8, no rate limit) "
    "delivering to "
    "TaskWSGIApp() (the endpoint, signature checked, no web framework); huey's SqliteHuey storage "
    "(results=False) with an in-process Consumer(workers=8, worker_type='thread'); neither side's wait for the "
    "last task polls (LocalTransport.join(); an Event set from huey's 'complete' signal)"
)


def bench_against_huey(data_dir: Path, profile: Profile) -> list[Row]:
    """Rows 3d-3e: the local queue against huey's SqliteHuey, enqueueing then running the same no-op tasks."""
    try:
        import huey  # noqa: F401 - the benchmark environment's only
    except ImportError:
        NOTES.append("Rows 3d-3e skipped: huey is not installed (nox -s bench installs it).")
        return [Row("3d. local queue vs huey: enqueue", "skipped", "huey", "-"),
                Row("3e. local queue vs huey: run in process", "skipped", "huey", "-")]  # fmt: skip
    count = profile.huey_tasks
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    for _ in range(profile.queue_repeats):
        theirs.append(run_huey(data_dir, count))
        ours.append(run_local_for_huey(data_dir, count))
    our_enqueue, our_run = (count / min(run[i] for run in ours) for i in (0, 1))
    their_enqueue, their_run = (count / min(run[i] for run in theirs) for i in (0, 1))
    NOTES.append(f"Rows 3d-3e: {HUEY_SETTINGS}.")
    return [
        Row(f"3d. local queue vs huey: enqueue {count:,}", per_second(our_enqueue),
            f"huey SqliteHuey: {per_second(their_enqueue)}", times(their_enqueue / our_enqueue)),
        Row(f"3e. local queue vs huey: run {count:,} in process", per_second(our_run),
            f"huey SqliteHuey: {per_second(their_run)}", times(their_run / our_run)),
    ]  # fmt: skip


def run_local_for_huey(data_dir: Path, count: int) -> tuple[float, float]:
    """Seconds to enqueue ``count`` no-op tasks on a fresh local queue, then to deliver them to TaskWSGIApp."""
    from im_task.wsgi import TaskWSGIApp

    run = run_local_queue(TaskWSGIApp(), data_dir, count)
    return run.enqueue_seconds, run.delivery_seconds


def run_huey(data_dir: Path, count: int) -> tuple[float, float]:
    """Seconds to enqueue ``count`` no-op tasks on a fresh SqliteHuey, then to run them with an in-process consumer."""
    from huey import Huey
    from huey.signals import SIGNAL_COMPLETE
    from huey.storage import SqliteStorage

    class NormalSync(SqliteStorage):  # type: ignore[misc]
        """SqliteHuey's storage (WAL by default) with synchronous=NORMAL, as the local queue has."""

        def _create_connection(self) -> Any:
            connection = super()._create_connection()
            connection.execute("pragma synchronous=NORMAL")
            return connection

    path = data_dir / f"huey-{time.monotonic_ns()}.sqlite3"
    queue = Huey("bench", storage_class=NormalSync, filename=str(path), results=False)
    noop, runs = bench_tasks.huey_tasks(queue)
    finished = threading.Event()
    completed = itertools.count(1)

    @queue.signal(SIGNAL_COMPLETE)  # type: ignore[untyped-decorator]
    def count_completed(signal: str, task: object) -> None:
        # The last task's worker wakes the waiting thread, as the local queue's dispatcher wakes join(): no polling
        # thread takes the interpreter lock from huey's workers.
        if next(completed) == count:
            finished.set()

    try:
        gc.collect()
        started = time.perf_counter()
        for _ in range(count):
            noop(*ARGS, **KWARGS)  # type: ignore[operator]
        enqueued = time.perf_counter()
        consumer = queue.create_consumer(workers=8, worker_type="thread", periodic=False, initial_delay=0.001,
                                         max_delay=0.01, check_worker_health=False)  # fmt: skip
        consumer.start()
        finished.wait(600)
        delivered = time.perf_counter()
        consumer.stop(graceful=True)
        if len(runs) != count:
            raise RuntimeError(f"huey ran {len(runs)} of {count} tasks: the benchmark measured failures.")
    finally:
        queue.storage.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return enqueued - started, delivered - enqueued


# -- Cloud Tasks, through gcloud-tasks-emulator ----------------------------------------------------------


CLOUD_ROWS = (
    "5a. Cloud Tasks: enqueue a serialised task",
    "5b. Cloud Tasks: enqueue a serialised task",
    "5c. Cloud Tasks: f.map of {n:,} tasks",
    "5d. Cloud Tasks: gather {n:,} f.enqueue_async",
    "5e. 5c with a 10 ms round trip",
    "5f. 5d with a 10 ms round trip",
)
#: The Cloud Tasks rows measured together (a subject with two baselines, or two subjects with one).
CLOUD_PAIRS = (("5a", "5b"), ("5c", "5d"), ("5e", "5f"))
#: Every row label ``--only`` takes, by the number that selects a whole group.
ROW_LABELS = {
    "1": ("1",),
    "2": ("2", "2b", "2c", "2d"),
    "3": ("3a", "3b", "3c", "3d", "3e"),
    "4": ("4a", "4b"),
    "5": ("5a", "5b", "5c", "5d", "5e", "5f"),
}
#: What the table's reader must know, printed below it (rows skipped and why).
NOTES: list[str] = []
#: The emulator's queue the rows enqueue on; it is paused, so the emulator spends nothing on deliveries.
CLOUD_QUEUE = "default"


def milli(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def bench_cloud_tasks(recorder: RecordingTransport, profile: Profile, only: frozenset[str] | None = None) -> list[Row]:
    """Rows 5a-5f: enqueueing on Cloud Tasks (the emulator), against the bare client and against ourselves.

    Printed as skipped, with the reason, when the emulator cannot be installed or the Cloud Tasks
    transport is missing.

    Args:
        recorder: The recording transport, to capture the request of a ``@task`` call.
        profile: How much work to do.
        only: The rows to measure (``"5a"``...; a pair measured together runs whole); None for all.
    """
    pairs = [pair for pair in CLOUD_PAIRS if only is None or not only.isdisjoint(pair)]
    names = [name.format(n=profile.cloud_tasks) for name in CLOUD_ROWS if name.split(".")[0] in sum(pairs, ())]
    try:
        from im_task_testsupport.cloudtasks_emulator import EmulatorUnavailableError, run_emulator

        from im_task.transports import CloudTasksTransport  # noqa: F401 - checks that it exists
    except ImportError as exc:
        NOTES.append(f"Rows 5a-5f skipped: they need im-task[gcp] ({exc}).")
        return [Row(name, "skipped", "needs im-task[gcp] (see below)", "-") for name in names]
    try:
        # Nothing is delivered (the queue is paused): the target is never called.
        with run_emulator("http://127.0.0.1:9", queues=[CLOUD_QUEUE], max_retries=0) as emulator:
            emulator.pause_queue(CLOUD_QUEUE)
            return _cloud_rows(emulator, recorder, profile, names, pairs)
    except EmulatorUnavailableError as exc:
        NOTES.append(f"Rows 5a-5f skipped: {exc}")
        return [Row(name, "skipped", "no Cloud Tasks emulator (see below)", "-") for name in names]


def _cloud_rows(
    emulator: Any, recorder: RecordingTransport, profile: Profile, names: list[str], pairs: list[tuple[str, str]]
) -> list[Row]:
    from im_task.transports import CloudTasksTransport

    rows: list[Row] = []
    names = list(names)
    transport = CloudTasksTransport(emulator.project, emulator.location, emulator_host=emulator.host)
    configure(transport=transport)
    try:
        if ("5a", "5b") in pairs:
            rows += _per_call_rows(emulator, recorder, profile, [names.pop(0), names.pop(0)])
        if ("5c", "5d") in pairs:
            rows += _bulk_rows(
                emulator, profile, [names.pop(0), names.pop(0)], profile.cloud_tasks, profile.cloud_repeats
            )
    finally:
        configure(transport=None)
        transport.close()
    if ("5e", "5f") not in pairs:
        return rows
    from latency_proxy import latency_proxy

    with latency_proxy(emulator.host, ROUND_TRIP) as proxy_host:
        transport = CloudTasksTransport(emulator.project, emulator.location, emulator_host=proxy_host)
        configure(transport=transport)
        try:
            rows += _bulk_rows(emulator, profile, names, profile.latency_calls, profile.latency_repeats)
        finally:
            configure(transport=None)
            transport.close()
    return rows


def _settle(emulator: Any, expected: int) -> None:
    """Checks that the emulator holds the ``expected`` tasks the timed side enqueued, then empties the queue."""
    held = emulator.task_count(CLOUD_QUEUE)
    if held != expected:
        raise RuntimeError(f"The emulator holds {held} tasks, not {expected}: the benchmark measured failures.")
    emulator.purge_queue(CLOUD_QUEUE)


def _bare_request_maker(transport: Any, request: TaskRequest, parent: str) -> Callable[[], Any]:
    """A function making the bare client's ``CreateTaskRequest``: the one ``transport`` sends, under a new name.

    Raises:
        RuntimeError: It is not the request ``transport`` builds (the rows would not compare like with like).
    """
    import uuid

    from google.cloud import tasks_v2

    from im_task.transports.cloudtasks.building import build_task

    def bare_request() -> Any:
        http = tasks_v2.AppEngineHttpRequest(
            http_method=tasks_v2.HttpMethod.POST, relative_uri=request.url, headers=request.headers, body=request.body
        )
        task = tasks_v2.Task(name=f"{parent}/tasks/{uuid.uuid4().hex}", app_engine_http_request=http)
        return tasks_v2.CreateTaskRequest(parent=parent, task=task)

    sample = bare_request()
    name = sample.task.name.rsplit("/", 1)[-1]
    ours = build_task(
        request, parent=parent, name=name, tasks_v2=tasks_v2, http=transport.http, routing=transport.routing
    )
    if tasks_v2.CreateTaskRequest.pb(ours) != tasks_v2.CreateTaskRequest.pb(sample):
        raise RuntimeError("The bare client's request differs from ours: rows 5a-5b would not compare like with like.")
    return bare_request


def _per_call_rows(emulator: Any, recorder: RecordingTransport, profile: Profile, names: list[str]) -> list[Row]:
    """Rows 5a and 5b: one task through our transport against the bare client's ``create_task`` with the same task.

    Both sides send the same, already serialised and signed task: the request of one ``noop(1, "two", c=3.0)``
    call, made once. Ours builds the ``CreateTaskRequest`` (naming the task, as its retry policy does) for each
    call; the bare client is given the same ``CreateTaskRequest``, named alike, built in advance, outside the
    timing, so it pays for the call alone. A whole ``@task`` call (serialising and signing too) is timed in the
    same turns and printed below the table.
    """
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    from im_task.transports import CloudTasksTransport

    transport = get_transport()
    assert isinstance(transport, CloudTasksTransport)
    configure(transport=recorder)
    request, _ = task_request_for_noop(recorder)
    configure(transport=transport)
    parent = emulator.queue_path(CLOUD_QUEUE)

    bare_request = _bare_request_maker(transport, request, parent)
    pending: list[Any] = []  # the bare client's requests of the coming batch, built before it
    reused = emulator.new_client()

    def bare_reused() -> None:
        reused.create_task(request=pending.pop())

    def bare_new_client() -> None:
        client = tasks_v2.CloudTasksClient(
            transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(emulator.host))
        )
        try:
            client.create_task(request=pending.pop())
        finally:
            client.transport.close()  # type: ignore[no-untyped-call]

    def ours() -> None:
        transport.enqueue(request)

    def task_call() -> None:
        bench_tasks.noop(*ARGS, **KWARGS)

    try:
        sides = {"reused": bare_reused, "ours": ours, "call": task_call, "new": bare_new_client}
        for call in sides.values():  # warm up: connections, first-call imports
            pending.append(bare_request())
            call()
        pending.clear()
        _settle(emulator, len(sides))
        calls = profile.cloud_calls
        best: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(profile.cloud_repeats):
            for side, call in sides.items():
                pending[:] = [bare_request() for _ in range(calls)] if side in ("reused", "new") else []
                best[side].append(timeit.Timer(call).timeit(calls) / calls)
                _settle(emulator, calls)
    finally:
        reused.transport.close()
    ours_s, reused_s, call_s, new_s = (min(best[side]) for side in ("ours", "reused", "call", "new"))
    NOTES.append(
        f"Rows 5a-5b: a whole @task call (serialising and signing included, see row 1) took {milli(call_s)} in the "
        f"same turns: {times(call_s / reused_s)} the bare create_task with one client."
    )
    return [
        Row(names[0], milli(ours_s), f"bare create_task, one client: {milli(reused_s)}", times(ours_s / reused_s)),
        Row(names[1], milli(ours_s), f"bare create_task, new client per call: {milli(new_s)}", times(ours_s / new_s)),
    ]


def _bulk_rows(emulator: Any, profile: Profile, names: list[str], sequential_count: int, repeats: int) -> list[Row]:
    """Rows 5c-5f: ``f.map`` and gathered ``f.enqueue_async`` calls against sequential calls (per task)."""
    import asyncio

    count = profile.cloud_tasks

    def sequential() -> None:
        for i in range(sequential_count):
            bench_tasks.noop_one(i)

    def bulk() -> None:
        bench_tasks.noop_one.map(range(count))

    async def gather() -> None:
        await asyncio.gather(*(bench_tasks.noop_one.enqueue_async(i) for i in range(count)))

    def concurrent() -> None:
        asyncio.run(asyncio.wait_for(gather(), timeout=600))

    sides = {"sequential": sequential, "map": bulk, "async": concurrent}
    sizes = {"sequential": sequential_count, "map": count, "async": count}
    runs: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(repeats):
        for side, run in sides.items():
            started = time.perf_counter()
            run()
            runs[side].append(time.perf_counter() - started)
            _settle(emulator, sizes[side])
    sequential_rate, map_rate, async_rate = (sizes[side] / min(runs[side]) for side in sides)
    baseline = f"sequential calls x{sequential_count:,}: {per_second(sequential_rate)}"
    return [
        Row(names[0], per_second(map_rate), baseline, times(sequential_rate / map_rate)),
        Row(names[1], per_second(async_rate), baseline, times(sequential_rate / async_rate)),
    ]


# -- the table -----------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    headers = Row("benchmark", "subject", "baseline (same process)", "ratio")
    widths = [max(len(getattr(row, field)) for row in [headers, *rows]) for field in ("name", "subject", "baseline")]

    def line(row: Row) -> str:
        return f"{row.name:<{widths[0]}}  {row.subject:>{widths[1]}}  {row.baseline:<{widths[2]}}  {row.ratio:>6}"

    print(line(headers))
    print("-" * len(line(headers)))
    for row in rows:
        print(line(row))
    print("\nratio: the subject's cost per call or per task over the baseline's (2.00x = twice as slow).")
    for note in NOTES:
        print(note)


def parse_only(text: str) -> frozenset[str]:
    """The rows ``--only`` names: labels (``5a``) or whole groups (``5``), separated by commas.

    Raises:
        argparse.ArgumentTypeError: A name is no row of the table.
    """
    selected: set[str] = set()
    for item in text.replace(" ", "").lower().split(","):
        if item in ROW_LABELS:
            selected.update(ROW_LABELS[item])
        elif any(item in labels for labels in ROW_LABELS.values()):
            selected.add(item)
        else:
            known = ", ".join(label for labels in ROW_LABELS.values() for label in labels)
            raise argparse.ArgumentTypeError(f"no row {item!r}: use row numbers (1-5) or labels ({known})")
    return frozenset(selected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="im-task benchmarks: ratios against same-process baselines.")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with few iterations")
    parser.add_argument("--adapter-row", choices=sorted(ADAPTER_ROWS), help=argparse.SUPPRESS)
    parser.add_argument("--number", type=int, default=FULL.number, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=FULL.repeats, help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        type=parse_only,
        metavar="ROWS",
        help="run only these rows, e.g. '5a,5b' or '1,5' (rows measured together run together)",
    )
    args = parser.parse_args(argv)
    if args.adapter_row:
        run_adapter_row(args.adapter_row, args.number, args.repeats)
        return 0
    only: frozenset[str] | None = args.only

    def wanted(*labels: str) -> bool:
        return only is None or not only.isdisjoint(labels)

    profile = QUICK if args.quick else FULL
    print(
        f"im-task benchmarks{' (quick)' if args.quick else ''}: Python {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; best of {profile.repeats} "
        f"interleaved batches of {profile.number:,} calls (rows 1-2), best of {profile.queue_repeats} "
        f"run(s) of {profile.tasks:,} tasks (row 3), best of {profile.imports} interpreters (row 4), best of "
        f"{profile.cloud_repeats} interleaved batches of {profile.cloud_calls:,} calls (rows 5a-5b) and runs of "
        f"{profile.cloud_tasks:,} tasks (rows 5c-5d; 5e-5f: {profile.latency_repeats} runs, {profile.latency_calls:,} "
        "sequential calls) through gcloud-tasks-emulator.\n",
        flush=True,
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="im-task-bench-") as tmp, configured(Path(tmp)) as recorder:
        app = make_app()
        if wanted("1"):
            rows.append(bench_enqueue(recorder, profile))
        if wanted("2"):
            rows.append(bench_route(app, recorder, profile))
        rows += [bench_adapter(label, profile) for label in ADAPTER_ROWS if wanted(label)]
        if wanted("3a", "3b", "3c"):
            rows += bench_local_queue(app, recorder, Path(tmp), profile)
        if wanted("3d", "3e"):
            rows += bench_against_huey(Path(tmp), profile)
    if wanted(*ROW_LABELS["4"]):
        rows += bench_import_cost(profile)
    if wanted(*ROW_LABELS["5"]):
        with tempfile.TemporaryDirectory(prefix="im-task-bench-") as tmp, configured(Path(tmp)) as recorder:
            rows += bench_cloud_tasks(recorder, profile, only)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
