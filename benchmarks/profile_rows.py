"""Profiles rows 1 and 2 of the benchmarks with cProfile: where an enqueue and a task request spend their time.

Run ``python benchmarks/profile_rows.py 1`` (a ``@task`` call on the
recording transport) or ``2`` (a no-op task through the Flask route), with
``--sort cumulative`` to see the calls by their total time. cProfile adds a
cost to every Python call, so the figures are larger than the benchmark's;
their proportions are what to read (``docs/benchmarks.md``, "Where the time
goes").
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tasks
import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cProfile over a benchmark row.")
    parser.add_argument("row", choices=["1", "2"], help="1: enqueue a @task call; 2: a task through the Flask route")
    parser.add_argument("--calls", type=int, default=20_000, help="calls profiled (after as many to warm up)")
    parser.add_argument("--sort", default="tottime", help="pstats sort key: tottime, cumulative...")
    parser.add_argument("--lines", type=int, default=40, help="functions shown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="im-task-profile-") as tmp, run.configured(Path(tmp)) as recorder:
        app = run.make_app()
        if args.row == "1":

            def call() -> object:
                if len(recorder.requests) > 1000:
                    recorder.clear()
                return bench_tasks.noop(*run.ARGS, **run.KWARGS)

        else:
            request, headers = run.task_request_for_noop(recorder)
            call = run.wsgi_caller(app, request.url, request.body, headers)
        for _ in range(args.calls):
            call()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.calls):
            call()
        profiler.disable()
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
