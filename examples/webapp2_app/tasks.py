"""The demo's tasks: each scenario shows one kind of callable im-task runs later.

Every ``start_*`` function is called by a handler of the app and enqueues a
task; the task runs later, when the queue POSTs it back to the app, and
records what it did in :mod:`webapp2_app.outcomes`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from im_task import PermanentTaskFailure, SingularTaskFailure, get_retry_count, log_as_retried, task
from webapp2_app import outcomes


def start_closure() -> None:
    """A nested function that uses a variable of its enclosing function."""
    greeting = "Hello from a closure"

    @task
    def greet(name: str) -> None:
        outcomes.record("closure", f"{greeting}, {name}!")

    greet("Grace")


FAN_OUT_DEPTH = 2


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


@task(queue="retries", includeheaders=True)
def flaky(headers: Mapping[str, str] | None = None) -> None:
    """Fails on its first attempt (408: retried, quietly), then succeeds.

    ``includeheaders=True`` makes the endpoint pass the request headers as
    ``headers=``; :func:`im_task.get_retry_count` says the same.
    """
    retry = get_retry_count()
    header = (headers or {}).get("X-AppEngine-TaskRetryCount")
    if retry == 0:
        outcomes.record("retries", "attempt 1 fails on purpose (SingularTaskFailure: 408, retried)", ok=False)
        raise SingularTaskFailure("not yet")
    log_as_retried("flaky succeeded on retry %d", retry)  # WARNING on retry 1: louder the more retries it took
    outcomes.record("retries", f"succeeded on retry {retry} (X-AppEngine-TaskRetryCount: {header})")


def start_retries() -> None:
    """Enqueues a task that needs two attempts."""
    flaky()


@task
def give_up() -> None:
    """Fails for good: answered 200 and never retried."""
    outcomes.record("permanent-failure", "raises PermanentTaskFailure (200, never retried)", ok=False)
    raise PermanentTaskFailure("this task cannot succeed")


def start_permanent_failure() -> None:
    """Enqueues a task that fails permanently."""
    give_up()


def start_lambda() -> None:
    """A lambda, made into a task on the spot."""
    task(lambda x: outcomes.record("lambda", f"a lambda computed {x} * 2 = {x * 2}"))(21)


#: Each scenario's name and the function that starts it.
SCENARIOS: Mapping[str, Callable[[], Any]] = {
    "closure": start_closure,
    "fan-out": start_fan_out,
    "retries": start_retries,
    "permanent-failure": start_permanent_failure,
    "lambda": start_lambda,
}
