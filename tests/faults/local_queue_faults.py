"""Fault runs of the local queue: kill -9, a full disk, an idle dispatcher, a purge and compaction.

Run it as ``nox -s faults`` (every run at its default size) or
``python tests/faults/local_queue_faults.py SUBCOMMAND --help``;
``tests/faults/test_local_queue_faults.py`` runs ``kill9`` and ``compact``
at a small size in the test suite. Each subcommand prints its figures in
one block and exits 1 when a guarantee fails:

* ``kill9``: tasks in a queue file, ``im-task worker`` processes SIGKILLed
  one after another while they deliver to a real HTTP server, then one
  worker drains the file. No task may be lost and no worker may crash;
  duplicates (delivery is at least once) and the drain time after the last
  kill are reported.
* ``fulldisk``: a dispatcher whose queue file cannot grow (the process's
  file size limit, ``RLIMIT_FSIZE``, which fails writes as a full disk
  does) for ``--seconds``. Its CPU and log lines per minute must stay under
  the stated bounds (it backs off instead of spinning), it must not die,
  and once the file can grow it must deliver every task.
* ``idle``: an in-process dispatcher and an ``im-task worker`` waiting for
  work. Their CPU must stay under the stated bound, and a task another
  process enqueues must be picked up within a second.
* ``compact``: tasks enqueued, purged, then ``compact()``: the file must
  shrink (when the freed space reaches compact's threshold; below it,
  compact must leave the file alone).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import faulthandler
import json
import logging
import math
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from im_task_testsupport.processes import python_env

from im_task.testing import serve_wsgi
from im_task.transports.base import TaskRequest
from im_task.transports.local import LocalTransport

TASK_URL = "/_ah/task/faults/f"
WORKER = [sys.executable, "-m", "im_task.cli", "worker"]
#: The dispatcher's pauses after storage errors: 1 s, doubling, up to a minute (``dispatcher._MAX_ERROR_PAUSE``).
FIRST_PAUSE, MAX_PAUSE = 1.0, 60.0
#: compact() vacuums when at least this much, and half the file, is free (``store._VACUUM_MIN_BYTES``).
VACUUM_MIN_BYTES = 4 * 1024 * 1024
PICKUP_BOUND = 1.0  # seconds: "delivers tasks enqueued by any process within a second"


@dataclass
class Report:
    """The figures of one run and the guarantees it broke."""

    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def check(self, holds: bool, failure: str) -> None:
        """Records ``failure`` unless the guarantee ``holds``."""
        if not holds:
            self.failures.append(failure)

    @property
    def ok(self) -> bool:
        """Whether every guarantee held."""
        return not self.failures

    def print(self, as_json: bool) -> None:
        """Prints the block of figures (or one JSON line), then the failures."""
        if as_json:
            print(json.dumps({"run": self.title, **self.figures, "failures": self.failures, "ok": self.ok}))
            return
        print(self.title)
        for key, value in self.figures.items():
            print(f"  {key:34} {value}")
        for line in self.details:
            print(f"  | {line}")
        for failure in self.failures:
            print(f"  FAILED: {failure}")
        print(f"  {'ok':34} {self.ok}")


def requests(names: Iterable[str], body: Callable[[], bytes]) -> list[TaskRequest]:
    return [TaskRequest(queue="default", url=TASK_URL, body=body(), name=name) for name in names]


def fill(path: Path, count: int, body: Callable[[], bytes], batch: int = 5000) -> None:
    """Enqueues ``count`` tasks named t0, t1, ... without starting a dispatcher."""
    with LocalTransport(path, autostart=False) as queue:
        for start in range(0, count, batch):
            queue.enqueue_many(requests((f"t{i}" for i in range(start, min(count, start + batch))), body))


def file_size(path: Path) -> int:
    """The database and its write-ahead log, in bytes."""
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())


class Sink:
    """A WSGI task target that counts the deliveries of each task name."""

    def __init__(self, work: float = 0.0) -> None:
        self.work = work
        self.seen: collections.Counter[str] = collections.Counter()
        self.first_seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if self.work:
            time.sleep(self.work)
        name = environ.get("HTTP_X_APPENGINE_TASKNAME", "")
        with self.arrived:
            self.seen[name] += 1
            self.first_seen.setdefault(name, time.time())
            self.arrived.notify_all()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"OK\n"]

    def wait_for(self, name: str, timeout: float) -> float | None:
        """When ``name`` was first delivered (``time.time()``), or None if not within ``timeout`` seconds."""
        with self.arrived:
            self.arrived.wait_for(lambda: name in self.first_seen, timeout)
            return self.first_seen.get(name)


@contextlib.contextmanager
def killed_on_exit(processes: list[subprocess.Popen[Any]]) -> Iterator[list[subprocess.Popen[Any]]]:
    """Kills (and reaps) every process still running in ``processes`` when the block ends, however it ends."""
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def tail(path: Path, lines: int = 8) -> list[str]:
    return path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of another process (Linux's /proc), or None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- kill9 ------------------------------------------------------------------


def run_kill9(tasks: int, kills: int, lease: float, seed: int, work_dir: Path) -> Report:
    report = Report(f"kill9: {tasks:,} tasks, {kills} workers SIGKILLed, --lease {lease:g}")
    db = work_dir / "queue.sqlite3"
    fill(db, tasks, lambda: b"x" * 200)
    sink = Sink(work=0.003)
    rng = random.Random(seed)
    log = work_dir / "worker.log"
    started = time.monotonic()
    processes: list[subprocess.Popen[Any]] = []
    with serve_wsgi(sink) as url, killed_on_exit(processes), log.open("ab") as log_file:
        command = [*WORKER, "--target", url, "--db", str(db), "--lease", f"{lease:g}", "-q", "--concurrency", "8"]
        share = max(2, tasks // (kills + 1))  # deliveries each killed worker makes, on average
        for _ in range(kills):
            worker = subprocess.Popen(command, env=python_env(), stdout=log_file, stderr=subprocess.STDOUT)
            processes.append(worker)
            deadline = time.monotonic() + 60
            with sink.arrived:  # killed in the middle of its deliveries, after a random number of new tasks
                goal = min(tasks, len(sink.seen) + rng.randint(share // 2, share * 3 // 2))
                while len(sink.seen) < goal and worker.poll() is None and time.monotonic() < deadline:
                    sink.arrived.wait(0.1)
            status = worker.poll()
            report.check(status is None, f"a worker exited by itself (status {status}) before its kill")
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        last_kill = time.monotonic()
        with sink.lock:
            before_last_kill = len(sink.seen)
        drain_timeout = 300 + 4 * lease
        final = subprocess.Popen(
            [*command, "--until-empty", "--wait-scheduled"], env=python_env(), stdout=log_file, stderr=subprocess.STDOUT
        )
        processes.append(final)
        try:
            status = final.wait(drain_timeout)
        except subprocess.TimeoutExpired:
            status = None
        drained = time.monotonic() - last_kill
    with LocalTransport(db, autostart=False) as queue:
        stats = queue.stats()
    calls = sum(sink.seen.values())
    lost = sorted({f"t{i}" for i in range(tasks)} - set(sink.seen), key=lambda n: int(n[1:]))
    report.figures.update(
        tasks=tasks,
        kills=kills,
        lease=lease,
        delivered_before_last_kill=before_last_kill,
        distinct_delivered=len(sink.seen),
        lost=len(lost),
        deliveries=calls,
        duplicates=calls - len(sink.seen),
        duplicates_per_kill=round((calls - len(sink.seen)) / kills, 1) if kills else 0,
        drain_after_last_kill_s=round(drained, 1),
        store_done=stats.done,
        store_left=stats.queued + stats.running,
        store_failed_or_gave_up=stats.failed + stats.gave_up + stats.dropped,
        total_s=round(time.monotonic() - started, 1),
    )
    report.check(not lost, f"{len(lost)} task(s) never delivered, e.g. {lost[:5]}")
    report.check(
        status == 0, f"the draining worker ended with status {status} (None: still running after {drain_timeout:g} s)"
    )
    report.check(stats.done == tasks, f"the file records {stats.done} done tasks, not {tasks}")
    report.check(stats.queued + stats.running == 0, f"{stats.queued + stats.running} task(s) left in the file")
    if not report.ok:
        report.details.extend(tail(log))
    return report


# -- fulldisk ---------------------------------------------------------------


def pauses_within(seconds: float) -> int:
    """How many storage-error pauses (1 s, doubling, capped at a minute) start within ``seconds``."""
    count, elapsed, pause = 0, 0.0, FIRST_PAUSE
    while elapsed <= seconds:
        count, elapsed, pause = count + 1, elapsed + pause, min(pause * 2, MAX_PAUSE)
    return count


class Keep(logging.Handler):
    """Keeps every record of a logger, with when it came."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.monotonic(), record.levelname, record.getMessage()))


def run_fulldisk(seconds: float, max_cpu_per_minute: float, limit_kb: int, work_dir: Path) -> Report:
    report = Report(f"fulldisk: a dispatcher whose queue file cannot grow (RLIMIT_FSIZE {limit_kb} KB), {seconds:g} s")
    db = work_dir / "queue.sqlite3"
    tasks = 1000
    fill(db, tasks, lambda: b"x" * 2000)
    keep = Keep()
    logger = logging.getLogger("im_task.local")
    logger.addHandler(keep)  # also keeps them off stderr (no last-resort handler), which the limit applies to
    logger.setLevel(logging.INFO)
    sink = Sink()
    queue = LocalTransport(db, target=sink, autostart=False, concurrency=8)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = min(limit_kb * 1024, hard) if hard != resource.RLIM_INFINITY else limit_kb * 1024
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        cpu_before, started = cpu_seconds(), time.monotonic()
        queue.start()
        time.sleep(seconds)
        alive = queue.running
        cpu = cpu_seconds() - cpu_before
        full_lines = list(keep.records)
        delivered_while_full = len(sink.seen)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        freed = time.monotonic()
        joined = queue.join(2 * MAX_PAUSE + 60, scheduled=True)
        recovered = time.monotonic() - freed
        stats = queue.stats()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        queue.close()
        signal.signal(signal.SIGXFSZ, previous_handler)
        logger.removeHandler(keep)
    allowed_lines = 2 * pauses_within(seconds) + 4
    per_minute = 60 / seconds
    report.figures.update(
        seconds_full=seconds,
        cpu_s=round(cpu, 3),
        cpu_s_per_minute=round(cpu * per_minute, 2),
        cpu_bound_s_per_minute=max_cpu_per_minute,
        log_lines=len(full_lines),
        log_lines_per_minute=round(len(full_lines) * per_minute, 1),
        log_lines_bound=allowed_lines,
        delivered_while_full=delivered_while_full,
        dispatcher_alive=alive,
        recovered_and_drained_s=round(recovered, 1),
        done=stats.done,
        left=stats.queued + stats.running,
        lost=tasks - len(sink.seen),
        duplicates=sum(sink.seen.values()) - len(sink.seen),
    )
    report.details.extend(f"+{t - started:5.1f}s {level} {message[:160]}" for t, level, message in full_lines[:12])
    report.check(alive, "the dispatcher died while the file could not grow")
    report.check(
        cpu * per_minute <= max_cpu_per_minute,
        f"{cpu * per_minute:.2f} s of CPU a minute, above the bound of {max_cpu_per_minute:g} s (it spins)",
    )
    report.check(
        len(full_lines) <= allowed_lines,
        f"{len(full_lines)} log lines in {seconds:g} s, above {allowed_lines} (two per backoff pause, and four)",
    )
    report.check(joined, f"the queue was not drained {2 * MAX_PAUSE + 60:g} s after the file could grow again")
    report.check(len(sink.seen) == tasks, f"{tasks - len(sink.seen)} task(s) never delivered")
    report.check(stats.done == tasks, f"the file records {stats.done} done tasks, not {tasks}")
    return report


# -- idle -------------------------------------------------------------------

ENQUEUE_ONE = """
import sys, time
from im_task.transports.base import TaskRequest
from im_task.transports.local import LocalTransport
for path in sys.argv[1:]:
    with LocalTransport(path, autostart=False) as queue:
        queue.enqueue(TaskRequest(queue="default", url=%r, body=b"x", name="pickup"))
        print(path, time.time(), flush=True)
"""


def run_idle(seconds: float, max_cpu_percent: float, work_dir: Path) -> Report:
    report = Report(f"idle: dispatchers waiting for work for {seconds:g} s, then a task from another process")
    in_process, by_worker = work_dir / "in-process.sqlite3", work_dir / "worker.sqlite3"
    sinks = {"in-process": Sink(), "worker": Sink()}
    log = work_dir / "worker.log"
    processes: list[subprocess.Popen[Any]] = []
    with (
        serve_wsgi(sinks["worker"]) as url,
        killed_on_exit(processes),
        log.open("ab") as log_file,
        LocalTransport(in_process, target=sinks["in-process"]) as queue,
    ):
        LocalTransport(by_worker, autostart=False).close()  # the file, before the worker opens it
        command = [*WORKER, "--target", url, "--db", str(by_worker), "-q"]
        worker = subprocess.Popen(command, env=python_env(), stdout=log_file, stderr=subprocess.STDOUT)
        processes.append(worker)
        time.sleep(2.0)  # the worker's start-up (imports) is not idling
        report.check(queue.running, "the in-process dispatcher did not start")
        report.check(worker.poll() is None, f"the worker exited by itself (status {worker.poll()})")
        mine, theirs, started = cpu_seconds(), process_cpu_seconds(worker.pid), time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        mine = cpu_seconds() - mine
        theirs_after = process_cpu_seconds(worker.pid)
        theirs = None if theirs is None or theirs_after is None else theirs_after - theirs
        enqueued = subprocess.run(
            [sys.executable, "-c", ENQUEUE_ONE % TASK_URL, str(in_process), str(by_worker)],
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        committed = dict(line.rsplit(" ", 1) for line in enqueued.stdout.split("\n") if line)
        pickups: dict[str, float | None] = {}
        for label, path in (("in-process", in_process), ("worker", by_worker)):
            seen = sinks[label].wait_for("pickup", 10)
            at = committed.get(str(path))
            pickups[label] = None if seen is None or at is None else seen - float(at)
        report.check(enqueued.returncode == 0, f"enqueuing from another process failed: {enqueued.stderr[-500:]}")
    mine_percent = mine / elapsed * 100
    report.figures.update(
        seconds=round(elapsed, 1),
        in_process_cpu_ms=round(mine * 1000, 1),
        in_process_cpu_percent=round(mine_percent, 3),
        worker_cpu_ms="n/a (no /proc)" if theirs is None else round(theirs * 1000, 1),
        worker_cpu_percent="n/a" if theirs is None else round(theirs / elapsed * 100, 3),
        cpu_bound_percent=max_cpu_percent,
        pickup_in_process_s=None if pickups["in-process"] is None else round(pickups["in-process"], 3),
        pickup_worker_s=None if pickups["worker"] is None else round(pickups["worker"], 3),
        pickup_bound_s=PICKUP_BOUND,
    )
    report.check(
        mine_percent <= max_cpu_percent,
        f"the idle in-process dispatcher used {mine_percent:.2f}% of a core, above {max_cpu_percent:g}%",
    )
    if theirs is not None:
        report.check(
            theirs / elapsed * 100 <= max_cpu_percent,
            f"the idle worker used {theirs / elapsed * 100:.2f}% of a core, above {max_cpu_percent:g}%",
        )
    for label, latency in pickups.items():
        report.check(
            latency is not None and latency <= PICKUP_BOUND,
            f"the {label} dispatcher picked up a task from another process after {latency} s (bound {PICKUP_BOUND} s)",
        )
    if not report.ok:
        report.details.extend(tail(log))
    return report


# -- compact ----------------------------------------------------------------


def run_compact(tasks: int, body_size: int, work_dir: Path) -> Report:
    report = Report(f"compact: {tasks:,} tasks of {body_size} B random bodies, purged, then compact()")
    db = work_dir / "queue.sqlite3"
    with LocalTransport(db, autostart=False) as queue:
        for start in range(0, tasks, 5000):
            names = (f"t{i}" for i in range(start, min(tasks, start + 5000)))
            queue.enqueue_many(requests(names, lambda: os.urandom(body_size)))
        full = file_size(db)
        purged_count = queue.purge()
        purged = file_size(db)
        started = time.monotonic()
        vacuumed = queue.compact()
        took = time.monotonic() - started
        after = file_size(db)
        stats = queue.stats()
    # compact() vacuums when half of the file, and 4 MB, is free: nearly all of it is, after a purge of everything.
    due = full * 0.9 >= VACUUM_MIN_BYTES
    report.figures.update(
        tasks=tasks,
        full_mb=round(full / 1e6, 3),
        purged=purged_count,
        after_purge_mb=round(purged / 1e6, 3),
        vacuumed=vacuumed,
        compact_s=round(took, 2),
        after_compact_mb=round(after / 1e6, 3),
        shrunk_to_percent=round(after / full * 100, 1) if full else 0,
        left=stats.queued,
    )
    report.check(purged_count == tasks and stats.queued == 0, f"purge() deleted {purged_count} of {tasks} tasks")
    if due:
        report.check(vacuumed, "compact() did not vacuum a file that is nearly all free pages")
        report.check(after < full / 10, f"the file did not shrink: {full:,} B before, {after:,} B after compact()")
    else:
        report.details.append(
            f"below compact()'s threshold ({VACUUM_MIN_BYTES / 1e6:.1f} MB free): it must not vacuum; "
            "give more --tasks or a larger --body-size to see it shrink"
        )
        report.check(not vacuumed, "compact() vacuumed below its threshold")
        report.check(after <= purged, f"compact() made the file grow: {purged:,} B -> {after:,} B")
    return report


# -- command line -----------------------------------------------------------


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"must be a {'whole ' if kind is int else ''}number > 0, not {text!r}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    commands = parse.add_subparsers(dest="command", required=True, metavar="{kill9,fulldisk,idle,compact}")
    kill9 = commands.add_parser("kill9", help="SIGKILL workers while they deliver; no task may be lost")
    kill9.add_argument("--tasks", type=positive(int), default=12000)
    kill9.add_argument("--kills", type=positive(int), default=10, help="workers started and SIGKILLed in turn")
    kill9.add_argument("--lease", type=positive(float), default=2.0, help="the workers' --lease, in seconds")
    kill9.add_argument(
        "--seed", type=int, default=1, help="seed of the kill times (each worker dies after 0.5 to 1.5 times its share)"
    )
    fulldisk = commands.add_parser("fulldisk", help="a queue file that cannot grow; no spinning, nothing lost")
    fulldisk.add_argument("--seconds", type=positive(float), default=60.0, help="how long the file cannot grow")
    fulldisk.add_argument("--max-cpu-per-minute", type=positive(float), default=3.0, help="bound, CPU s a minute")
    fulldisk.add_argument("--limit-kb", type=positive(int), default=256, help="the file size limit (RLIMIT_FSIZE)")
    idle = commands.add_parser("idle", help="CPU of dispatchers waiting for work, and their pick-up time")
    idle.add_argument("--seconds", type=positive(float), default=10.0)
    idle.add_argument("--max-cpu-percent", type=positive(float), default=1.0, help="bound, percent of a core")
    compact = commands.add_parser("compact", help="the file's size after a purge and compact()")
    compact.add_argument("--tasks", type=positive(int), default=100_000)
    compact.add_argument("--body-size", type=positive(int), default=300, help="bytes of each task's body")
    return parse


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="im-task-local-faults-") as tmp:
        work_dir = Path(tmp)
        if args.command == "kill9":
            report = run_kill9(args.tasks, args.kills, args.lease, args.seed, work_dir)
        else:
            # In-process runs: a hang is a failure too (tracebacks of every thread, then exit status 1).
            seconds = getattr(args, "seconds", 0.0)
            watchdog = {"fulldisk": seconds + 3 * MAX_PAUSE + 120, "idle": seconds + 120}.get(args.command, 900.0)
            faulthandler.dump_traceback_later(math.ceil(watchdog), exit=True)
            try:
                if args.command == "fulldisk":
                    report = run_fulldisk(args.seconds, args.max_cpu_per_minute, args.limit_kb, work_dir)
                elif args.command == "idle":
                    report = run_idle(args.seconds, args.max_cpu_percent, work_dir)
                else:
                    report = run_compact(args.tasks, args.body_size, work_dir)
            finally:
                faulthandler.cancel_dump_traceback_later()
    report.print(args.json)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
