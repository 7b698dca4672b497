"""The demo's scenarios: each shows one kind of callable im-task runs later, and what it must record.

Every scenario's ``start`` function is called by a view of a demo app and
enqueues a task; the task runs later, when the queue POSTs it back to the app,
and records what it did in :mod:`demo_kit.outcomes`. Tasks are plain core
code, so every framework's app starts the very same ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from demo_kit import outcomes
from demo_kit.outcomes import Counts
from im_task import PermanentTaskFailure, task

__all__ = ["COUNTDOWN", "FAN_OUT_DEPTH", "SCENARIOS", "Scenario", "UnknownScenarioError", "catalog", "start"]


@dataclass(frozen=True)
class Scenario:
    """One thing the demo shows.

    Attributes:
        name: Its name, in ``/scenarios/<name>`` and the summary.
        start: Enqueues its task(s); called by a view of the app.
        expected: What its tasks must record before the demo passes.
    """

    name: str
    start: Callable[[], object]
    expected: Counts

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"A scenario's name must be a non-empty string without '/', not {self.name!r}.")
        if not callable(self.start):
            raise TypeError(f"Scenario {self.name!r}: start must be a callable without arguments.")
        if not isinstance(self.expected, Counts):
            raise TypeError(f"Scenario {self.name!r}: expected must be a demo_kit.outcomes.Counts.")


class UnknownScenarioError(LookupError):
    """No scenario has the name a request asked for."""


# -- a closure -------------------------------------------------------------------


def start_closure() -> None:
    """A nested function that uses a variable of its enclosing function."""
    greeting = "Hello from a closure"

    @task
    def greet(name: str) -> None:
        outcomes.record("closure", f"{greeting}, {name}!")

    greet("Ada")


# -- a recursive, nested fan-out -----------------------------------------------------

FAN_OUT_DEPTH = 3


def start_fan_out() -> None:
    """A nested task that enqueues two copies of itself until the leaves: 2**depth leaves."""

    @task(queue="fanout")
    def node(path: str, depth: int) -> None:
        if depth == 0:
            outcomes.record("fan-out", f"leaf {path}")
            return
        node(path + "0", depth - 1)
        node(path + "1", depth - 1)

    node("", FAN_OUT_DEPTH)


# -- a function passed as an argument ----------------------------------------------------


def square(x: int) -> int:
    """A plain function, handed to a task as an argument."""
    return x * x


@task
def apply_to_all(func: Callable[[int], int], values: list[int]) -> None:
    """Applies ``func`` to each value, in the task."""
    outcomes.record("function-argument", f"{func.__name__} over {values} -> {[func(v) for v in values]}")


def start_function_argument() -> None:
    """Passes a function to a task."""
    apply_to_all(square, [1, 2, 3])


# -- a countdown ---------------------------------------------------------------------------

COUNTDOWN = 1.0


@task(countdown=COUNTDOWN)
def remind(enqueued_at: float) -> None:
    """Runs ``COUNTDOWN`` seconds after it was enqueued (recorded as a failure if it ran early)."""
    waited = time.time() - enqueued_at
    outcomes.record(
        "countdown", f"ran {waited:.2f}s after it was enqueued (countdown {COUNTDOWN}s)", ok=waited >= COUNTDOWN
    )


def start_countdown() -> None:
    """Enqueues a task that waits before it runs."""
    remind(time.time())


# -- fails twice, then succeeds --------------------------------------------------------------


@task(queue="retries", includeheaders=True)
def flaky(headers: Mapping[str, str] | None = None) -> None:
    """Fails on its first two attempts; reads its retry count from the request headers.

    ``includeheaders=True`` makes the endpoint pass the request headers as ``headers=``.
    """
    retry = int(headers["X-AppEngine-TaskRetryCount"]) if headers else 0
    if retry < 2:
        outcomes.record("retries", f"attempt {retry + 1} fails on purpose (500, retried)", ok=False)
        raise RuntimeError(f"flaky failure on retry {retry}")
    outcomes.record("retries", f"succeeded on retry {retry}")


def start_retries() -> None:
    """Enqueues a task that needs three attempts."""
    flaky()


# -- a permanent failure -----------------------------------------------------------------------


@task
def give_up() -> None:
    """Fails for good: answered 200 and never retried."""
    outcomes.record("permanent-failure", "raises PermanentTaskFailure (200, never retried)", ok=False)
    raise PermanentTaskFailure("this task cannot succeed")


def start_permanent_failure() -> None:
    """Enqueues a task that fails permanently."""
    give_up()


# -- a lambda ---------------------------------------------------------------------------------------


def start_lambda() -> None:
    """A lambda, made into a task on the spot."""
    task(lambda x: outcomes.record("lambda", f"a lambda computed {x} * 2 = {x * 2}"))(21)


# -- the catalogue ------------------------------------------------------------------------------------


def catalog(extra: Iterable[Scenario] = ()) -> Mapping[str, Scenario]:
    """Every shared scenario, then ``extra`` ones (e.g. a framework's own), by name.

    Args:
        extra: More scenarios; their names must differ from every other's.

    Returns:
        A read-only mapping of name to scenario, in the order the demo starts them.

    Raises:
        TypeError: If an extra is not a :class:`Scenario`.
        ValueError: If two scenarios have the same name.
    """
    scenarios = dict(SCENARIOS)
    for scenario in extra:
        if not isinstance(scenario, Scenario):
            raise TypeError(f"extra scenarios must be demo_kit.scenarios.Scenario objects, not {scenario!r}.")
        if scenario.name in scenarios:
            raise ValueError(f"Two scenarios are named {scenario.name!r}; give the extra one another name.")
        scenarios[scenario.name] = scenario
    return MappingProxyType(scenarios)


def start(name: str, scenarios: Mapping[str, Scenario] | None = None) -> None:
    """Starts the scenario ``name``: what a demo app's ``POST /scenarios/<name>`` view does.

    Args:
        name: The scenario's name.
        scenarios: Where to look it up; :data:`SCENARIOS` by default.

    Raises:
        UnknownScenarioError: If there is no such scenario; its message lists them (answer 404 with it).
    """
    scenarios = SCENARIOS if scenarios is None else scenarios
    if name not in scenarios:
        raise UnknownScenarioError(f"No scenario {name!r}; try one of {', '.join(scenarios)}.")
    scenarios[name].start()


#: The scenarios every demo app shows, by name, in the order the demo starts them.
SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        scenario.name: scenario
        for scenario in (
            Scenario("closure", start_closure, Counts(runs=1)),
            Scenario("fan-out", start_fan_out, Counts(runs=2**FAN_OUT_DEPTH)),
            Scenario("function-argument", start_function_argument, Counts(runs=1)),
            Scenario("countdown", start_countdown, Counts(runs=1)),
            Scenario("retries", start_retries, Counts(runs=1, failures=2)),
            Scenario("permanent-failure", start_permanent_failure, Counts(runs=0, failures=1)),
            Scenario("lambda", start_lambda, Counts(runs=1)),
        )
    }
)
