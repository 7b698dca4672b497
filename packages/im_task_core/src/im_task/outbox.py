"""The transactional outbox: ``transactional=True`` tasks written in the caller's transaction, sent after commit.

The algorithm lives here, behind a small storage protocol,
:class:`OutboxStorage`; a framework gives only its storage (Django's ORM
table in ``im_task_django.outbox``, a Datastore kind with google-cloud-ndb).
Its promise: a committed task is sent (never lost), a rolled-back one never,
and no row is sent twice by this outbox, however its senders and sweepers
race or die, except in the one window no outbox can close (see below).

* :func:`enqueue_on_commit` refuses a task over the transport's size limit
  (now, rather than after the commit), names it, writes it with
  :meth:`OutboxStorage.add` in the open transaction (so a rollback leaves
  nothing), held by a fresh owner, and asks :meth:`OutboxStorage.after_commit`
  to call :func:`send_after_commit`.
* :func:`send_after_commit` **claims** the row (for ``lease`` seconds from
  the commit), sends it, and **marks it sent** (durably, before any
  deletion). A reused name (``TaskAlreadyExistsError``) means the queue has
  it: it counts as sent. Any other send error releases the claim and keeps
  the row for the sweep (an ``EnqueueError`` is logged as a warning, a
  transport breaking its contract as an error). Nothing after a successful
  send raises: a storage failure there is logged and left to the sweep. The
  one exception is a transport that runs tasks inline
  (``Transport.runs_inline``, e.g. ``ImmediateTransport``): the task ran, so
  its row is marked sent and its own error reaches the committer.
* :func:`sweep` deletes rows marked sent, then sends the rows whose claim
  ended (or that were never claimed) at least ``older_than`` seconds ago,
  a batch at a time, each under its own claim, and returns a
  :class:`SweepResult`. Ages count from the commit, or from the end of the
  last claim: never from the task call, so a long transaction's row is not
  taken while its own send is under way.

The window the sending side cannot close: a process that dies after the
queue took a task but before the sent mark is written leaves a row that looks
unsent. Two things keep the sweep from sending it again:

* **The receiving side marks it.** When the endpoint receives a task whose
  name is an outbox name (:data:`NAME_PREFIX`), after its signature verified
  and before it runs, it calls :func:`record_delivery`, which marks the row
  sent in the outbox of every registered transaction binder that has it
  (:meth:`DeliveryMarks.mark_delivered`, by task name). The queue has the
  task, whatever it then does, so no sweep sends it again. This holds while
  the queue delivers within ``lease + older_than`` of the send: the sweep
  threshold must exceed the queue's delivery latency (a task with a
  countdown is delivered late by design: for it, only the queue's name
  memory below prevents a second copy).
* **The queue refuses the name.** Every row carries its task name from the
  start, so a queue that remembers names (Cloud Tasks for about an hour, the
  local queue for its ``name_retention``) refuses a second copy: sweep well
  within the queue's name memory (``lease + older_than`` plus the sweep interval).

Example:
    A storage keeping rows in a dict, in a "transaction" that commits at once::

        >>> import time
        >>> from im_task.outbox import enqueue_on_commit, sweep
        >>> from im_task.transports import RecordingTransport, TaskRequest
        >>> class DictStorage:
        ...     def __init__(self):
        ...         self.rows = {}  # key -> [request, owner, claimed_until, sent]
        ...     def add(self, request, owner):
        ...         self.rows[len(self.rows) + 1] = [request, owner, None, False]
        ...         return len(self.rows)
        ...     def after_commit(self, callback):
        ...         callback()  # this storage's transactions commit at once
        ...     def claim(self, key, owner, seconds, older_than):
        ...         request, holder, until, sent = self.rows[key]
        ...         ended = until is not None and older_than is not None and until <= time.time() - older_than
        ...         if sent or (holder != owner and not ended):
        ...             return False
        ...         self.rows[key][1:3] = [owner, time.time() + seconds]
        ...         return True
        ...     def release(self, key, owner):
        ...         if self.rows[key][1] == owner:
        ...             self.rows[key][2] = time.time()
        ...     def mark_sent(self, key):
        ...         self.rows[key][3] = True
        ...     def due(self, older_than, after, limit):
        ...         for row in self.rows.values():
        ...             row[2] = time.time() if row[2] is None else row[2]  # first seen committed: the clock starts
        ...         return [(k, r[0]) for k, r in sorted(self.rows.items())
        ...                 if not r[3] and r[2] <= time.time() - older_than and (after is None or k > after)][:limit]
        ...     def purge_sent(self):
        ...         done = [k for k, r in self.rows.items() if r[3]]
        ...         for key in done:
        ...             del self.rows[key]
        ...         return len(done)
        >>> storage, queue = DictStorage(), RecordingTransport()
        >>> enqueue_on_commit(storage, TaskRequest("default", "/_ah/task/m/f", b"..."), queue).startswith("outbox-")
        True
        >>> (len(queue.requests), storage.rows[1][3])  # sent once, and marked sent
        (1, True)
        >>> sweep(storage, queue, older_than=60)  # deletes the sent row; nothing to send
        SweepResult(sent=0, already_sent=0, failed=0, taken=0, purged=1)
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from im_task.errors import ConfigurationError, EnqueueError, TaskAlreadyExistsError
from im_task.state import STATE
from im_task.transports.base import TaskRequest, Transport, check_size

__all__ = [
    "CLAIM_SECONDS",
    "NAME_PREFIX",
    "SWEEP_BATCH",
    "DeliveryMarks",
    "OutboxStorage",
    "SweepResult",
    "check_sweep_arguments",
    "enqueue_on_commit",
    "is_outbox_task_name",
    "new_owner",
    "outbox_task_name",
    "record_delivery",
    "send_after_commit",
    "sweep",
]

logger = logging.getLogger("im_task")

#: Prefix of the names of tasks sent through the outbox.
NAME_PREFIX = "outbox-"
#: Rows a sweep reads at a time.
SWEEP_BATCH = 100
#: Seconds a claim lasts by default: a send must finish within it (Cloud Tasks' ``create_task`` times out at 20 s).
CLAIM_SECONDS = 30.0

KeyT = TypeVar("KeyT")


class OutboxStorage(Protocol[KeyT]):
    """Where outbox rows live: a table in the application's database, next to its own data.

    ``KeyT`` is the type of a row's key (Django: the primary key). What a
    storage must guarantee, on which the algorithm's promise rests:

    * **Transactional writes.** :meth:`add` writes in the caller's open
      transaction: a rollback leaves no row, a commit makes it visible.
    * **Claims with an owner and an expiry.** A row holds one owner (a
      string) and the time its claim ends, ``claimed_until``, which is
      *unset* when the row is written: its clock has not started.
      :meth:`claim` is an atomic compare-and-set (one conditional ``UPDATE``,
      ``select_for_update(skip_locked=True)``, or a Datastore transaction):
      of two parties claiming the same row at once, at most one gets it.
    * **Ages from the commit.** :meth:`due` starts the clock of a committed
      row never claimed (``claimed_until`` unset) when it first sees it, so
      that an age never counts from the task call: a row is due
      ``older_than`` seconds after its last claim ended, or after a sweep
      first saw it committed.
    * **Durable sent marks.** :meth:`mark_sent` is written (committed) when
      it returns; a row marked sent is never returned by :meth:`due` nor
      claimed again, and stays until :meth:`purge_sent` deletes it.
    * **A stable order of keys**, so that a sweep can go on after the last
      key of a batch while rows change.
    * **Optionally, marks by name** (:class:`DeliveryMarks`): the endpoint
      marks an outbox task's row sent when the queue delivers it.

    Times are those of the storage's own clock (one clock, or clocks kept in
    sync well within the claim lease).
    """

    def add(self, request: TaskRequest, owner: str) -> KeyT:
        """Writes a task in the transaction open now, held by ``owner``, its clock not started.

        Args:
            request: The task, already named.
            owner: Who will send it after commit (:func:`new_owner`).

        Returns:
            The row's key.

        Raises:
            BadTransactionStateError: No transaction of this storage is open.
        """

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Has ``callback`` called once the open transaction commits, and never if it rolls back.

        An exception of the callback should reach the code that committed
        (only an inline transport's task error is let out).

        Args:
            callback: What to call, without arguments.
        """

    def claim(self, key: KeyT, owner: str, seconds: float, older_than: float | None) -> bool:
        """Atomically takes a row for ``seconds`` from now, when no one else may be sending it.

        The claim succeeds when the row exists, is not marked sent, and
        either ``owner`` holds it already, or (``older_than`` not None) its
        last claim ended at least ``older_than`` seconds ago (an unset clock
        never qualifies). It then sets the owner to ``owner`` and
        ``claimed_until`` to now + ``seconds``.

        Args:
            key: What :meth:`add` returned.
            owner: Who claims.
            seconds: How long the claim lasts.
            older_than: Seconds since another owner's claim ended; None: only ``owner``'s own row.

        Returns:
            Whether ``owner`` holds the row now.
        """

    def release(self, key: KeyT, owner: str) -> None:
        """Ends ``owner``'s claim now (a failed send): the row is due ``older_than`` seconds later.

        Does nothing when another owner holds the row, or it is marked sent.

        Args:
            key: The row.
            owner: Who claimed it.
        """

    def mark_sent(self, key: KeyT) -> None:
        """Durably records that a row's task is with the queue, or ran inline: it is never sent again.

        A key already gone is not an error.

        Args:
            key: The row.
        """

    def due(self, older_than: float, after: KeyT | None, limit: int) -> Sequence[tuple[KeyT, TaskRequest]]:
        """Rows not marked sent whose claim ended at least ``older_than`` seconds ago, in the order of their keys.

        First starts the clock of every committed row never claimed (its
        ``claimed_until`` becomes now), so a row the sender never reached is
        due ``older_than`` seconds after a sweep first saw it.

        Args:
            older_than: Seconds since the row's claim ended.
            after: Only rows after this key (the last key of the previous batch), or None from the start.
            limit: Most rows to return.

        Returns:
            ``(key, request)`` pairs, at most ``limit``.
        """

    def purge_sent(self) -> int:
        """Deletes the rows marked sent.

        Returns:
            How many were deleted.
        """


class DeliveryMarks(Protocol):
    """What a storage does, optionally, for the receiving side: marks a row sent by its task name.

    A storage that has it (the Django and ndb storages do) closes the one
    window the sending side cannot: see :func:`record_delivery`.
    """

    def mark_delivered(self, name: str) -> bool:
        """Durably marks the unsent row of the task named ``name`` sent, outside any transaction of the caller's.

        The endpoint calls it when the queue delivers the task, before the
        task runs; a row already marked sent, or gone, or never in this
        storage is left alone. It must be cheap: the row is found by its
        name (an index, or a key derived from the name).

        Args:
            name: The task's name, an outbox name (:func:`is_outbox_task_name`).

        Returns:
            Whether a row was marked now.
        """


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did.

    Attributes:
        sent: Tasks sent now.
        already_sent: Tasks the queue already had (refused by name), now marked sent.
        failed: Tasks that could not be sent (or whose claim could not be written); they stay for the next sweep.
        taken: Due rows another sender or sweeper claimed first; left to it.
        purged: Rows marked sent (by any sender) that this sweep deleted.
    """

    sent: int = 0
    already_sent: int = 0
    failed: int = 0
    taken: int = 0
    purged: int = 0


def outbox_task_name() -> str:
    """A fresh task name for an outbox row: random, so never one a queue has seen."""
    return f"{NAME_PREFIX}{uuid.uuid4().hex}"


def is_outbox_task_name(name: object) -> bool:
    """Whether ``name`` is a name :func:`outbox_task_name` makes: ``"outbox-"`` and 32 hexadecimal digits."""
    return (
        isinstance(name, str)
        and len(name) == _NAME_LENGTH
        and name.startswith(NAME_PREFIX)
        and all(c in _HEX for c in name[len(NAME_PREFIX) :])
    )


_NAME_LENGTH = len(NAME_PREFIX) + 32
_HEX = frozenset("0123456789abcdef")


def record_delivery(task_name: str) -> bool:
    """The endpoint's hook: marks the outbox row of a task the queue delivers sent, before the task runs.

    For a task whose name is not an outbox name this is one string check.
    For an outbox task, each registered transaction binder with an
    ``outbox_storage`` that has :meth:`DeliveryMarks.mark_delivered` is asked
    in turn, until one marks the row: then no sweep sends the task again,
    even when its sender died after the queue took it and before the sent
    mark. A failure is logged as a warning and never raised: the task runs
    all the same (the sweep may then send it again, and a queue that
    remembers names refuses that copy).

    Args:
        task_name: The task name the queue delivered the task with.

    Returns:
        Whether a row was marked now (False: not an outbox task, already marked, or in no registered outbox).
    """
    if not task_name.startswith(NAME_PREFIX) or not is_outbox_task_name(task_name):
        return False
    with STATE.lock:
        binders = list(STATE.binders)
    for binder in binders:
        storage: object = binder
        try:
            storage = getattr(binder, "outbox_storage", None)
            mark = getattr(storage, "mark_delivered", None)
            if mark is not None and mark(task_name):
                logger.debug(
                    "Outbox task %s was delivered before its sent mark; its row is marked sent now.", task_name
                )
                return True
        except Exception:
            logger.warning(
                "Could not mark outbox task %s delivered in %r; it runs all the same, but a sweep may send it "
                "again if its sender died before marking it sent.",
                task_name,
                storage,
                exc_info=True,
            )
    return False


# The endpoint calls this on every delivery, after the signature verified (the executor cannot import the outbox).
STATE.delivery_hook = record_delivery


def new_owner(kind: str = "sender") -> str:
    """A fresh owner for claims: ``"<kind>-<random hex>"``, at most 40 characters.

    Args:
        kind: What claims, for people reading the table (``"sender"``, ``"sweep"``).

    Raises:
        ConfigurationError: ``kind`` is not a short word.
    """
    if not isinstance(kind, str) or not kind.isidentifier() or len(kind) > 10:
        raise ConfigurationError(f"kind must be a short word such as 'sender' or 'sweep', not {kind!r}.")
    return f"{kind}-{uuid.uuid4().hex[:24]}"


def _check_lease(lease: object) -> float:
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not 0 < lease < math.inf:
        raise ConfigurationError(f"lease must be a number of seconds > 0 (the longest a send may take), not {lease!r}.")
    return float(lease)


def enqueue_on_commit(
    storage: OutboxStorage[KeyT], request: TaskRequest, transport: Transport, *, lease: float = CLAIM_SECONDS
) -> str:
    """Writes a task to the outbox in the open transaction and has it sent after commit.

    Args:
        storage: The outbox.
        request: The task; it gets a fresh name unless it has one.
        transport: Where to send it after commit.
        lease: Seconds the send after commit holds its claim from the commit;
            a sweep leaves the row alone until then (and ``older_than`` more).

    Returns:
        The task's name.

    Raises:
        TaskTooLargeError: The task is over the transport's size limit (known
            now, inside the transaction, rather than after the commit); nothing is written.
        BadTransactionStateError: From the storage: no transaction is open.
        ConfigurationError: ``lease`` is not a number of seconds > 0.
    """
    seconds = _check_lease(lease)
    check_size(request, transport)
    named = request if request.name else replace(request, name=outbox_task_name())
    owner = new_owner("sender")
    key = storage.add(named, owner)
    storage.after_commit(lambda: send_after_commit(storage, key, named, transport, owner=owner, lease=seconds))
    return str(named.name)


def send_after_commit(
    storage: OutboxStorage[KeyT],
    key: KeyT,
    request: TaskRequest,
    transport: Transport,
    *,
    owner: str,
    lease: float = CLAIM_SECONDS,
) -> bool:
    """Claims a committed outbox row, sends its task and marks it sent; never raises but an inline task's error.

    Args:
        storage: The outbox.
        key: The row's key.
        request: The row's task.
        transport: Where to send it.
        owner: The owner the row was written with (:meth:`OutboxStorage.add`).
        lease: Seconds the claim lasts: the longest the send may take.

    Returns:
        Whether this call sent the task (or found the queue had it). False:
        a sweep claimed the row first, or the send or the claim failed and
        the row stays for :func:`sweep`.

    Raises:
        Exception: With an inline transport, the task's own error, after the
            row is marked sent (the task ran).
    """
    try:
        claimed = storage.claim(key, owner, lease, None)
    except Exception:
        logger.error(
            "Could not claim transactional task %s (%s) after commit; it is not sent now and stays in the outbox "
            "for the sweeper.",
            request.name,
            request.url,
            exc_info=True,
        )
        return False
    if not claimed:
        logger.info("Transactional task %s was claimed by a sweep before its send after commit.", request.name)
        return False
    return _send_claimed(storage, key, request, transport, owner=owner, when="after commit") != _Outcome.FAILED


class _Outcome:
    SENT = "sent"
    ALREADY_SENT = "already_sent"
    FAILED = "failed"


def _send_claimed(
    storage: OutboxStorage[KeyT], key: KeyT, request: TaskRequest, transport: Transport, *, owner: str, when: str
) -> str:
    """Sends a row this owner holds; marks it sent, or releases it. Raises only an inline task's error."""
    try:
        transport.enqueue(request)
    except TaskAlreadyExistsError:
        outcome = _Outcome.ALREADY_SENT
    except EnqueueError:
        return _failed(storage, key, owner, request, when=when, level=logging.WARNING, why="")
    except Exception:
        if transport.runs_inline and when == "after commit":  # the task ran (ImmediateTransport): its own error
            _mark_sent(storage, key, request)
            raise
        # A transport breaking its contract (e.g. a raw ConnectionResetError), or an inline task's error in a sweep.
        why = "; the transport raised an unexpected error"
        return _failed(storage, key, owner, request, when=when, level=logging.ERROR, why=why)
    else:
        outcome = _Outcome.SENT
    _mark_sent(storage, key, request)
    return outcome


def _failed(
    storage: OutboxStorage[KeyT], key: KeyT, owner: str, request: TaskRequest, *, when: str, level: int, why: str
) -> str:
    """Logs a send that failed (with its traceback) and releases the row for the sweeper."""
    logger.log(
        level,
        "Could not send transactional task %s (%s) %s%s; it stays in the outbox for the sweeper.",
        request.name,
        request.url,
        when,
        why,
        exc_info=True,
    )
    _release(storage, key, owner, request)
    return _Outcome.FAILED


def _mark_sent(storage: OutboxStorage[KeyT], key: KeyT, request: TaskRequest) -> None:
    try:
        storage.mark_sent(key)
    except Exception:
        logger.error(
            "Transactional task %s (%s) was sent, but could not be marked sent; a sweep will send it again once "
            "its claim ends, and the queue refuses that copy by name while it remembers the name.",
            request.name,
            request.url,
            exc_info=True,
        )


def _release(storage: OutboxStorage[KeyT], key: KeyT, owner: str, request: TaskRequest) -> None:
    try:
        storage.release(key, owner)
    except Exception:
        logger.error(
            "Could not release the claim on transactional task %s; a sweep takes it when the claim ends.",
            request.name,
            exc_info=True,
        )


def check_sweep_arguments(older_than: object, limit: object, lease: object = CLAIM_SECONDS) -> None:
    """Refuses sweep arguments :func:`sweep` cannot use (adapters check them before resolving their defaults).

    Args:
        older_than: Seconds, a number >= 0.
        limit: A whole number >= 1, or None.
        lease: Seconds, a number > 0.

    Raises:
        ConfigurationError: Saying what the argument takes.
    """
    if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or not 0 <= older_than < math.inf:
        raise ConfigurationError(f"older_than must be a number of seconds >= 0, not {older_than!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigurationError(f"limit must be a whole number >= 1 or None, not {limit!r}.")
    _check_lease(lease)


def sweep(
    storage: OutboxStorage[KeyT],
    transport: Transport,
    *,
    older_than: float,
    limit: int | None = None,
    lease: float = CLAIM_SECONDS,
) -> SweepResult:
    """Deletes the rows marked sent, and sends the rows whose send after commit did not happen.

    Rows are read :data:`SWEEP_BATCH` at a time, and each is claimed before
    it is sent: a row that another sweep or the send after commit claimed
    first counts as taken and is left to it. A row whose send raises
    anything (an ``EnqueueError``, another error of the transport, or with
    an inline transport the task's own error) counts as failed, is released
    and stays for the next sweep; the sweep goes on with the rest. A row the
    queue refuses by name was sent before: it counts as already sent and is
    marked sent. Several sweeps may run at once.

    Args:
        storage: The outbox.
        transport: Where to send.
        older_than: Only rows whose last claim ended (or that a sweep first
            saw committed) at least this many seconds ago.
        limit: Most rows to handle in this call; all when None.
        lease: Seconds each claim of this sweep lasts: the longest a send may take.

    Returns:
        Counts of what was sent, found already sent, failed, taken by another party, and purged.

    Raises:
        ConfigurationError: For a negative ``older_than``, a ``limit`` below 1 or a ``lease`` not > 0.
    """
    check_sweep_arguments(older_than, limit, lease)
    purged = storage.purge_sent()
    owner = new_owner("sweep")
    counts = dict.fromkeys((_Outcome.SENT, _Outcome.ALREADY_SENT, _Outcome.FAILED, "taken"), 0)
    after: KeyT | None = None
    remaining = limit
    while remaining is None or remaining > 0:
        size = SWEEP_BATCH if remaining is None else min(SWEEP_BATCH, remaining)
        batch = list(storage.due(older_than, after, size))
        for key, request in batch:
            try:
                claimed = storage.claim(key, owner, lease, older_than)
            except Exception:
                logger.error("Could not claim outbox task %s; it stays.", request.name, exc_info=True)
                counts[_Outcome.FAILED] += 1
                continue
            if not claimed:
                counts["taken"] += 1
                continue
            counts[_send_claimed(storage, key, request, transport, owner=owner, when="in a sweep")] += 1
        if len(batch) < size:
            break
        after = batch[-1][0]
        if remaining is not None:
            remaining -= len(batch)
    result = SweepResult(
        sent=counts[_Outcome.SENT],
        already_sent=counts[_Outcome.ALREADY_SENT],
        failed=counts[_Outcome.FAILED],
        taken=counts["taken"],
        purged=purged,
    )
    if result != SweepResult():
        logger.info(
            "Outbox sweep: %d sent, %d already sent, %d failed, %d taken by another sender, %d sent rows purged.",
            result.sent,
            result.already_sent,
            result.failed,
            result.taken,
            result.purged,
        )
    return result
