"""The demo's tasks: each scenario shows one kind of callable im-task runs later.

Every ``start_*`` function is called by a view of the project and enqueues a
task; the task runs later, when the queue POSTs it back to the project, and
records what it did in :mod:`django_project.outcomes`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from django.db import transaction

from django_project import outcomes
from django_project.models import Order
from im_task import PermanentTaskFailure, task

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


# -- a transactional task -----------------------------------------------------------------------


@task(transactional=True)
def confirm_order(order_id: int) -> None:
    """Sent only if the transaction that made the order commits; the order is there when it runs."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        outcomes.record("transactional", f"order {order_id} was rolled back, yet its task ran", ok=False)
        return
    outcomes.record("transactional", f"{order} confirmed after its transaction committed")


class _Cancelled(Exception):
    pass


def start_transactional() -> None:
    """Two orders, each with its task: one transaction commits, the other rolls back (no task)."""
    with transaction.atomic():
        order = Order.objects.create(item="a book")
        confirm_order(order.pk)  # written to the outbox in this transaction, sent after the commit
    try:
        with transaction.atomic():
            doomed = Order.objects.create(item="a cancelled order")
            confirm_order(doomed.pk)
            raise _Cancelled
    except _Cancelled:
        pass  # rolled back: the order and its task are gone


# -- a lambda ---------------------------------------------------------------------------------------


def start_lambda() -> None:
    """A lambda, made into a task on the spot."""
    task(lambda x: outcomes.record("lambda", f"a lambda computed {x} * 2 = {x * 2}"))(21)


#: Each scenario's name and the function that starts it.
SCENARIOS: Mapping[str, Callable[[], Any]] = {
    "closure": start_closure,
    "fan-out": start_fan_out,
    "function-argument": start_function_argument,
    "countdown": start_countdown,
    "retries": start_retries,
    "permanent-failure": start_permanent_failure,
    "lambda": start_lambda,
    "transactional": start_transactional,
}
