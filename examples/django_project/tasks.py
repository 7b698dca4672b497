"""The project's own scenario, a transactional task; the other scenarios are the shared ones of :mod:`demo_kit`.

A view starts it like the others (``POST /scenarios/transactional``); the
task runs later, when the queue POSTs it back to the project, and records
what it did in :mod:`demo_kit.outcomes`. The model is imported where it is
used, so that the demo can import this module before Django is set up.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction

from demo_kit import outcomes
from demo_kit.outcomes import Counts
from demo_kit.scenarios import Scenario, catalog
from im_task import task

__all__ = ["SCENARIOS", "TRANSACTIONAL", "confirm_order", "start_transactional"]


@task(transactional=True)
def confirm_order(order_id: int) -> None:
    """Sent only if the transaction that made the order commits; the order is there when it runs."""
    from django_project.models import Order

    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        outcomes.record("transactional", f"order {order_id} was rolled back, yet its task ran", ok=False)
        return
    outcomes.record("transactional", f"{order} confirmed after its transaction committed")


class _Cancelled(Exception):
    pass


def start_transactional() -> None:
    """Two orders, each with its task: one transaction commits, the other rolls back (no task)."""
    from django_project.models import Order

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


#: The transactional scenario: the rolled-back order's task must never run.
TRANSACTIONAL = Scenario("transactional", start_transactional, Counts(runs=1))

#: The shared scenarios, then the transactional one: what the project's views start.
SCENARIOS: Mapping[str, Scenario] = catalog([TRANSACTIONAL])
