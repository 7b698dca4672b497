"""The long fuzz run of the endpoints: coverage-guided with atheris, or a long hypothesis run where it is missing.

``nox -s fuzz`` runs it; by hand::

    python tests/fuzz/endpoint_fuzz.py --seconds 300
    python tests/fuzz/endpoint_fuzz.py --runs 100000 --engine hypothesis

Every input becomes one request (:func:`im_task_testsupport.fuzzing.build_case`:
a genuine envelope of some version, bit-flipped, truncated, extended,
re-keyed, re-signed with another secret or replaced by random bytes; an odd
method, path and task headers of both families; replays under other paths
and queues) sent to ``im_task.executor.handle_request`` or
``im_task.endpoints.handle_request``. With atheris the choices come from the
bytes libFuzzer mutates, guided by the coverage of the ``im_task`` package.
The run counts inputs, and each broken invariant
(:func:`im_task_testsupport.fuzzing.violations`): inputs that reached the
unpickler without a valid signature, 500s from im-task's own code,
tracebacks or secrets in responses or logs, forged log lines, refusals at
ERROR, exceptions escaping the handler, odd statuses; and memory: what
5,000 more inputs at the end keep under ``tracemalloc``, and the growth of
the process' RSS over the run. It prints the counts and exits 1 when any is
not zero or memory grew past ``--max-growth-mb`` / ``--max-rss-growth-mb``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))

#: The counts the run reports, each tied to the words of :func:`violations` that count towards it.
CATEGORIES = {
    "unpickled without a valid signature": "unpickled without a valid signature",
    "500s from our own code": "500 from im-task's own code",
    "tracebacks in responses or logs": "traceback",
    "secrets in responses or logs": "a secret in",
    "forged log lines (raw CR/LF)": "raw CR/LF",
    "refusals logged at ERROR": "a refusal logged at",
    "exceptions escaping the handler": "an exception escaped",
    "statuses not answered by the contract": "status",
}
SHOWN = 5
#: Inputs run under tracemalloc at the end, to measure what they keep.
LEAK_INPUTS = 5000


class Run:
    """The counts of one fuzz run, and its budget.

    Args:
        seconds: How long to run.
        runs: How many inputs to run at most (None: until ``seconds`` pass).
        warmup: Inputs to run before memory is measured.
    """

    def __init__(self, seconds: float, runs: int | None, warmup: int) -> None:
        self.deadline = time.monotonic() + seconds
        self.started = time.monotonic()
        self.runs = runs
        self.warmup = warmup
        self.inputs = 0
        self.statuses: Counter[int] = Counter()
        self.found: Counter[str] = Counter(dict.fromkeys(CATEGORIES, 0))
        self.examples: list[str] = []
        self.unpickled = 0
        self.baseline_rss: int | None = None
        self.fuzzing: Any = None
        self.seeds: Sequence[Any] = ()
        self.markers: Sequence[str] = ()

    def done(self) -> bool:
        """Whether the budget is spent."""
        return (self.runs is not None and self.inputs >= self.runs) or time.monotonic() >= self.deadline

    def one(self, choices: Any) -> None:
        """Runs one input and counts what it broke."""
        fuzzing = self.fuzzing
        case, _ = fuzzing.build_case(choices, self.seeds)
        outcome = fuzzing.run_case(case)
        self.inputs += 1
        self.unpickled += outcome.unpickled
        if outcome.response is not None:
            self.statuses[outcome.response.status] += 1
        broken = fuzzing.violations(case, outcome, self.seeds, self.markers)
        for violation in broken:
            for name, words in CATEGORIES.items():
                if words in violation:
                    self.found[name] += 1
                    break
            else:
                self.found["statuses not answered by the contract"] += 1
        if broken and len(self.examples) < SHOWN:
            self.examples.append(f"{broken} <- {case.method!r} {case.path!r}: {'; '.join(case.note)[:600]}")
        if self.inputs == self.warmup:
            self.baseline_rss = _rss()

    def leaked(self) -> float:
        """Python memory kept by :data:`LEAK_INPUTS` more inputs (made with a fixed seed), traced, in MiB."""
        rng = random.Random(0)
        for _ in range(200):  # caches (the store's connection, logging's) settle first
            self.one(_RandomChoices(rng))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(LEAK_INPUTS):
            self.one(_RandomChoices(rng))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return (after - before) / 2**20

    def report(self, engine: str, max_growth_mb: float, max_rss_growth_mb: float) -> int:
        """Measures memory growth, prints the counts; returns the exit status (1 when anything was found)."""
        elapsed = time.monotonic() - self.started
        fuzzed = self.inputs
        rss_growth = (_rss() - (self.baseline_rss or _rss())) / 2**20
        traced_growth = self.leaked()
        print(f"\nim-task endpoint fuzz ({engine}): {fuzzed} inputs in {elapsed:.0f} s", flush=True)
        print(f"  then {LEAK_INPUTS + 200} more under tracemalloc, for leaks: {self.inputs} in all")
        print(f"  responses by status: {dict(sorted(self.statuses.items()))}")
        print(f"  genuine envelopes that ran (unpickled under their own path, queue and time): {self.unpickled}")
        for name, count in self.found.items():
            print(f"  {name}: {count}")
        print(
            f"  memory growth: {traced_growth:+.2f} MiB traced by Python over {LEAK_INPUTS} inputs (limit "
            f"{max_growth_mb}), {rss_growth:+.1f} MiB RSS over the run after {self.warmup} warm-up inputs "
            f"(limit {max_rss_growth_mb})"
        )
        if self.baseline_rss is None:
            print("  (too few inputs to measure the RSS growth)")
        for example in self.examples:
            print(f"  e.g. {example}")
        failed = any(self.found.values()) or traced_growth > max_growth_mb or rss_growth > max_rss_growth_mb
        print("FAILED: see the counts above." if failed else "OK: no invariant broken.", flush=True)
        return 1 if failed else 0


class _RandomChoices:
    """Choices from a seeded random generator, for the leak check."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def integer(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)

    def raw(self, most: int) -> bytes:
        return self._rng.randbytes(self._rng.randint(0, most))

    def text(self, most: int) -> str:
        return "".join(
            chr(self._rng.choice((self._rng.randint(32, 126), self._rng.randint(0, 0xD7FF), 10, 13)))
            for _ in range(self._rng.randint(0, most))
        )


def _rss() -> int:
    """The process' resident memory in bytes (0 where /proc is missing)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def _setup(run: Run, stack: ExitStack) -> None:
    from im_task_testsupport import fuzzing

    from im_task.testing import isolated_settings

    data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="im-task-fuzz-"))
    stack.enter_context(isolated_settings(data_dir, secret=fuzzing.FUZZ_SECRET))
    run.fuzzing = fuzzing
    run.seeds = fuzzing.make_seeds()
    run.markers = fuzzing.secret_markers([fuzzing.FUZZ_SECRET])


class _Spent(BaseException):
    """The budget is spent: ends a hypothesis run from inside an example (hypothesis lets it through)."""


class _FuzzedChoices:
    """The choices of a case, read from the bytes libFuzzer mutates."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def integer(self, low: int, high: int) -> int:
        value: int = self._provider.ConsumeIntInRange(low, high)
        return value

    def raw(self, most: int) -> bytes:
        value: bytes = self._provider.ConsumeBytes(self._provider.ConsumeIntInRange(0, most))
        return value

    def text(self, most: int) -> str:
        value: str = self._provider.ConsumeUnicodeNoSurrogates(self._provider.ConsumeIntInRange(0, most))
        return value


def run_atheris(run: Run, finish: Callable[[], None]) -> None:
    """Runs libFuzzer over the endpoints, instrumenting the ``im_task`` package; never returns."""
    import atheris

    with atheris.instrument_imports(include=["im_task"]):  # before anything else imports them
        for module in ("im_task.endpoints", "im_task.executor", "im_task.envelope", "im_task.body"):
            importlib.import_module(module)

    with ExitStack() as stack:
        _setup(run, stack)

        def one_input(data: bytes) -> None:
            run.one(_FuzzedChoices(atheris.FuzzedDataProvider(data)))
            if run.done():
                finish()

        corpus = tempfile.mkdtemp(prefix="im-task-fuzz-corpus-")
        args = [sys.argv[0], corpus, "-max_len=4096", "-rss_limit_mb=4096", "-timeout=60", "-print_final_stats=0"]
        atheris.Setup(args, one_input)
        atheris.Fuzz()


def run_hypothesis(run: Run, finish: Callable[[], None]) -> None:
    """Runs the same cases drawn by hypothesis, for as long as the budget allows; never returns."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import strategies as st

    with ExitStack() as stack:
        _setup(run, stack)
        from im_task_testsupport.fuzzing import DrawnChoices

        def chunk(size: int) -> None:  # a fresh engine per chunk: hypothesis' memory of a run is let go
            @settings(
                max_examples=size,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
                verbosity=Verbosity.quiet,
            )
            @given(st.data())
            def one(data: st.DataObject) -> None:
                run.one(DrawnChoices(data))
                if run.done():
                    raise _Spent

            one()

        try:
            while not run.done():
                chunk(1000 if run.runs is None else min(1000, run.runs - run.inputs))
        except _Spent:
            pass
        finish()


def main(argv: Sequence[str] | None = None) -> int:
    """Parses the options and runs the fuzzer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long to run (default: 300)")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    parser.add_argument("--warmup", type=int, default=2000, help="inputs before memory is measured (default: 2000)")
    parser.add_argument(
        "--max-growth-mb", type=float, default=4.0, help=f"Python memory {LEAK_INPUTS} inputs may keep (MiB; default 4)"
    )
    parser.add_argument("--max-rss-growth-mb", type=float, default=256.0, help="RSS growth allowed (MiB; default 256)")
    options = parser.parse_args(argv)
    engine = options.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            print(
                f"atheris is not installed for Python {sys.version_info.major}.{sys.version_info.minor}: "
                "falling back to a long hypothesis run (not coverage-guided).",
                flush=True,
            )
            engine = "hypothesis"
        else:
            engine = "atheris"
    run = Run(options.seconds, options.runs, options.warmup)

    def finish() -> None:
        status = run.report(engine, options.max_growth_mb, options.max_rss_growth_mb)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # libFuzzer does not return to Python; neither does this

    if engine == "atheris":
        run_atheris(run, finish)
    else:
        run_hypothesis(run, finish)
    return 0


if __name__ == "__main__":
    sys.exit(main())
