"""Transactional enqueue: where ``transactional=True`` tasks go.

A task made with ``transactional=True`` must be enqueued if and only if the
surrounding database transaction commits. Integrations (Django's ORM,
google-cloud-ndb) provide a :class:`TransactionBinder` that writes the task
to an outbox inside the transaction and sends it after commit.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from im_task.errors import BadTransactionStateError
from im_task.state import STATE
from im_task.transports.base import TaskRequest, Transport

__all__ = ["TransactionBinder", "current_binder", "enqueue_transactional", "register_binder", "unregister_binder"]


@runtime_checkable
class TransactionBinder(Protocol):
    """Ties a task to the transaction open in the current thread or context."""

    #: Shown in errors, e.g. ``"Django's transaction.atomic()"``.
    description: str

    def in_transaction(self) -> bool:
        """Whether a transaction this binder can join is open here."""

    def enqueue_on_commit(self, request: TaskRequest, transport: Transport) -> str:
        """Records the task in the transaction; sends it after commit.

        Args:
            request: The task. Its ``name`` is None: the binder gives it a
                deterministic name so that a re-send never runs it twice.
            transport: Where to send it after commit.

        Returns:
            The name the task will have.
        """


def register_binder(binder: TransactionBinder) -> None:
    """Adds a binder; adapters call this once when they are set up."""
    with STATE.lock:
        if binder not in STATE.binders:
            STATE.binders.append(binder)


def unregister_binder(binder: TransactionBinder) -> None:
    """Removes a binder added with :func:`register_binder`."""
    with STATE.lock:
        if binder in STATE.binders:
            STATE.binders.remove(binder)


def enqueue_transactional(request: TaskRequest, transport: Transport) -> str:
    """Hands a task to the binder of the open transaction.

    Raises:
        BadTransactionStateError: No registered binder has an open transaction.
    """
    return current_binder().enqueue_on_commit(request, transport)


def current_binder() -> TransactionBinder:
    """The binder of the transaction open here (bulk enqueue looks it up once for every task).

    Raises:
        BadTransactionStateError: No registered binder has an open transaction.
    """
    with STATE.lock:
        binders: list[TransactionBinder] = list(STATE.binders)
    for binder in binders:
        if binder.in_transaction():
            return binder
    known = ", ".join(b.description for b in binders) or "none is installed"
    raise BadTransactionStateError(
        "transactional=True needs an open transaction to join (supported: "
        f"{known}); call the task inside one, or drop transactional=True."
    )
