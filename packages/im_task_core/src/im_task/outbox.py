"""The transactional outbox: ``transactional=True`` tasks written in the caller's transaction, sent after commit.

The algorithm lives here, behind a small storage protocol,
:class:`OutboxStorage`; a framework gives only its storage (Django's ORM
table in ``im_task_django.outbox``, a Datastore kind with google-cloud-ndb).

* :func:`enqueue_on_commit` refuses a task over the transport's size limit
  (now, rather than after the commit), names it, writes it with
  :meth:`OutboxStorage.add` in the open transaction (so a rollback leaves
  nothing) and asks :meth:`OutboxStorage.after_commit` to call
  :func:`send_after_commit`.
* :func:`send_after_commit` sends the task and marks it sent. A reused name
  (``TaskAlreadyExistsError``) means a sweep sent it first: it counts as
  sent. Any other error keeps the row for the sweep (an ``EnqueueError`` is
  logged as a warning, a transport breaking its contract as an error), except
  with a transport that runs tasks inline (``Transport.runs_inline``, e.g.
  ``ImmediateTransport``): the task ran, so its row is marked sent and its
  own error reaches the committer.
* :func:`sweep` sends the rows left behind (the process died between the
  commit and the send, or the queue could not be reached), a batch at a
  time, and returns a :class:`SweepResult`. Every row carries its task name
  from the start, so a task sent twice is refused by the queue rather than
  run twice.

Example:
    A storage keeping rows in a dict, in a "transaction" that commits at once::

        >>> from im_task.outbox import enqueue_on_commit, sweep
        >>> from im_task.transports import RecordingTransport, TaskRequest
        >>> class DictStorage:
        ...     def __init__(self):
        ...         self.rows = {}
        ...     def add(self, request):
        ...         key = len(self.rows) + 1
        ...         self.rows[key] = request
        ...         return key
        ...     def after_commit(self, callback):
        ...         callback()  # this storage's transactions commit at once
        ...     def mark_sent(self, key):
        ...         self.rows.pop(key, None)
        ...     def unsent(self, older_than, after, limit):
        ...         return sorted((k, r) for k, r in self.rows.items() if after is None or k > after)[:limit]
        >>> storage, queue = DictStorage(), RecordingTransport()
        >>> enqueue_on_commit(storage, TaskRequest("default", "/_ah/task/m/f", b"..."), queue).startswith("outbox-")
        True
        >>> (len(queue.requests), storage.rows)
        (1, {})
        >>> sweep(storage, queue, older_than=60)
        SweepResult(sent=0, already_sent=0, failed=0)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from im_task.errors import ConfigurationError, EnqueueError, TaskAlreadyExistsError
from im_task.transports.base import TaskRequest, Transport, check_size

__all__ = [
    "NAME_PREFIX",
    "SWEEP_BATCH",
    "OutboxStorage",
    "SweepResult",
    "check_sweep_arguments",
    "enqueue_on_commit",
    "outbox_task_name",
    "send_after_commit",
    "sweep",
]

logger = logging.getLogger("im_task")

#: Prefix of the names of tasks sent through the outbox.
NAME_PREFIX = "outbox-"
#: Rows a sweep reads at a time.
SWEEP_BATCH = 100

KeyT = TypeVar("KeyT")


class OutboxStorage(Protocol[KeyT]):
    """Where outbox rows live: a table in the application's database, next to its own data.

    ``KeyT`` is the type of a row's key (Django: the primary key). Rows
    are listed in a stable order of their keys, so that a sweep can go on
    after the last key of a batch while rows are deleted.
    """

    def add(self, request: TaskRequest) -> KeyT:
        """Writes a task in the transaction open now; a rollback must leave no row.

        Args:
            request: The task, already named.

        Returns:
            The row's key.

        Raises:
            BadTransactionStateError: No transaction of this storage is open.
        """

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Has ``callback`` called once the open transaction commits, and never if it rolls back.

        An exception of the callback should reach the code that committed
        (an inline transport's task error does).

        Args:
            callback: What to call, without arguments.
        """

    def mark_sent(self, key: KeyT) -> None:
        """Records that a row's task is with the queue, or ran inline: it is never sent again.

        Storages delete the row. A key already gone is not an error (a
        sweep and the send after commit may both get there).

        Args:
            key: What :meth:`add` returned.
        """

    def unsent(self, older_than: float, after: KeyT | None, limit: int) -> Sequence[tuple[KeyT, TaskRequest]]:
        """Rows not marked sent, written at least ``older_than`` seconds ago, in the order of their keys.

        Args:
            older_than: Seconds since the row was written (its transaction's time is fine).
            after: Only rows after this key (the last key of the previous batch), or None from the start.
            limit: Most rows to return.

        Returns:
            ``(key, request)`` pairs, at most ``limit``.
        """


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did.

    Attributes:
        sent: Tasks sent now.
        already_sent: Tasks the queue already had (refused by name), now marked sent.
        failed: Tasks that could not be sent; they stay for the next sweep.
    """

    sent: int = 0
    already_sent: int = 0
    failed: int = 0


def outbox_task_name() -> str:
    """A fresh task name for an outbox row: random, so never one a queue has seen."""
    return f"{NAME_PREFIX}{uuid.uuid4().hex}"


def enqueue_on_commit(storage: OutboxStorage[KeyT], request: TaskRequest, transport: Transport) -> str:
    """Writes a task to the outbox in the open transaction and has it sent after commit.

    Args:
        storage: The outbox.
        request: The task; it gets a fresh name unless it has one.
        transport: Where to send it after commit.

    Returns:
        The task's name.

    Raises:
        TaskTooLargeError: The task is over the transport's size limit (known
            now, inside the transaction, rather than after the commit); nothing is written.
        BadTransactionStateError: From the storage: no transaction is open.
    """
    check_size(request, transport)
    named = request if request.name else replace(request, name=outbox_task_name())
    key = storage.add(named)
    storage.after_commit(lambda: send_after_commit(storage, key, named, transport))
    return str(named.name)


def send_after_commit(storage: OutboxStorage[KeyT], key: KeyT, request: TaskRequest, transport: Transport) -> bool:
    """Sends a committed outbox row's task and marks it sent; keeps the row when the send fails.

    Args:
        storage: The outbox.
        key: The row's key.
        request: The row's task.
        transport: Where to send it.

    Returns:
        Whether the row was marked sent (False: it stays for :func:`sweep`).

    Raises:
        Exception: With an inline transport, the task's own error, after the
            row is marked sent (the task ran).
    """
    try:
        transport.enqueue(request)
    except TaskAlreadyExistsError:
        pass  # a sweep sent it first
    except EnqueueError:
        logger.warning(
            "Could not send transactional task %s (%s) after commit; it stays in the outbox for the sweeper.",
            request.name,
            request.url,
            exc_info=True,
        )
        return False
    except Exception:
        if transport.runs_inline:  # the task ran (ImmediateTransport) and this is its own error
            storage.mark_sent(key)
            raise
        # A transport that breaks its contract (e.g. a raw ConnectionResetError): the task may not be queued.
        logger.error(
            "Could not send transactional task %s (%s) after commit; the transport raised an unexpected error. "
            "It stays in the outbox for the sweeper.",
            request.name,
            request.url,
            exc_info=True,
        )
        return False
    storage.mark_sent(key)
    return True


def check_sweep_arguments(older_than: object, limit: object) -> None:
    """Refuses sweep arguments :func:`sweep` cannot use (adapters check them before resolving their defaults).

    Args:
        older_than: Seconds, a number >= 0.
        limit: A whole number >= 1, or None.

    Raises:
        ConfigurationError: Saying what the argument takes.
    """
    if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or not older_than >= 0:
        raise ConfigurationError(f"older_than must be a number of seconds >= 0, not {older_than!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigurationError(f"limit must be a whole number >= 1 or None, not {limit!r}.")


def sweep(
    storage: OutboxStorage[KeyT],
    transport: Transport,
    *,
    older_than: float,
    limit: int | None = None,
) -> SweepResult:
    """Sends the outbox rows whose send after commit did not happen.

    Rows are read :data:`SWEEP_BATCH` at a time. A row whose send raises
    anything (an ``EnqueueError``, another error of the transport, or with
    an inline transport the task's own error) counts as failed and stays for
    the next sweep; the sweep goes on with the rest. A row the queue refuses
    by name was sent before: it counts as already sent and is marked sent.

    Args:
        storage: The outbox.
        transport: Where to send.
        older_than: Only rows written at least this many seconds ago, so that
            sends after commit under way are left alone.
        limit: Most rows to handle in this call; all when None.

    Returns:
        Counts of what was sent, found already sent, and failed.

    Raises:
        ConfigurationError: For a negative ``older_than`` or a ``limit`` below 1.
    """
    check_sweep_arguments(older_than, limit)
    sent = already_sent = failed = 0
    after: KeyT | None = None
    remaining = limit
    while remaining is None or remaining > 0:
        size = SWEEP_BATCH if remaining is None else min(SWEEP_BATCH, remaining)
        batch = list(storage.unsent(older_than, after, size))
        for key, request in batch:
            try:
                transport.enqueue(request)
            except TaskAlreadyExistsError:
                already_sent += 1
            except EnqueueError:
                logger.warning(
                    "Could not send outbox task %s (%s); it stays.", request.name, request.url, exc_info=True
                )
                failed += 1
                continue
            except Exception:  # a transport breaking its contract, or the task's own error from an inline one
                logger.error(
                    "Could not send outbox task %s (%s): unexpected error; it stays.",
                    request.name,
                    request.url,
                    exc_info=True,
                )
                failed += 1
                continue
            else:
                sent += 1
            storage.mark_sent(key)
        if len(batch) < size:
            break
        after = batch[-1][0]
        if remaining is not None:
            remaining -= len(batch)
    if sent or already_sent or failed:
        logger.info("Outbox sweep: %d sent, %d already sent, %d failed.", sent, already_sent, failed)
    return SweepResult(sent=sent, already_sent=already_sent, failed=failed)
