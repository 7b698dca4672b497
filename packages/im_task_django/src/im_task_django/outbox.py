"""The outbox of ``transactional=True`` tasks in Django's ORM: the storage the core's outbox algorithm runs on.

The algorithm (write in the transaction, claim, send after commit, mark
sent, sweep what is left, each row under one claim) is :mod:`im_task.outbox`'s.
This module gives it :class:`DjangoOutboxStorage`, rows of
:class:`~im_task_django.models.OutboxTask` written in ``transaction.atomic()``
and sent by a ``transaction.on_commit`` callback, and the two calls the app
makes: :func:`enqueue_on_commit` (for the transaction binder) and
:func:`sweep_outbox` (``manage.py im_task_sweep``, from cron or as a task).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from im_task import outbox, runtime
from im_task.errors import BadTransactionStateError, ConfigurationError
from im_task.outbox import SweepResult, outbox_task_name
from im_task.retry import RetryOptions
from im_task.transports.base import TaskRequest, Transport
from im_task_django.conf import get_app_settings
from im_task_django.models import OutboxTask

__all__ = ["DjangoOutboxStorage", "SweepResult", "enqueue_on_commit", "outbox_task_name", "sweep_outbox"]

logger = logging.getLogger("im_task.django")

T = TypeVar("T")


class DjangoOutboxStorage:
    """The :class:`~im_task.outbox.OutboxStorage` of Django: the ``im_task_outbox`` table of one database.

    Keys are the rows' primary keys. A claim is one conditional ``UPDATE``
    (a compare-and-set every database makes atomic: on PostgreSQL, a second
    ``UPDATE`` of the row waits for the first and re-checks its condition; on
    SQLite, writes are serialised), so no row lock is held during a send.
    Times are this process's clock (``django.utils.timezone.now``): keep the
    clocks of the machines that send and sweep in sync, well within
    ``CLAIM_SECONDS``.

    The writes made after a commit (claim, release, sent mark) are retried
    once on a fresh connection when the database connection fails (a killed
    connection, a restarted server): they are idempotent.

    The task endpoint writes here too: :meth:`mark_delivered` marks a row
    sent by its task name (the table's unique index) when the queue delivers
    the task, so that no sweep sends it again.

    Args:
        using: Alias of the database holding the table, whose ``transaction.atomic()`` tasks join.

    Example:
        >>> from im_task.outbox import sweep
        >>> sweep(DjangoOutboxStorage("default"), transport, older_than=60)  # doctest: +SKIP
        SweepResult(sent=0, already_sent=0, failed=0, taken=0, purged=0)
    """

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        if not isinstance(using, str) or not using:
            raise ConfigurationError(f"using must be a database alias such as 'default', not {using!r}.")
        self.using = using

    def add(self, request: TaskRequest, owner: str) -> int:
        """Writes the task's row in the open ``transaction.atomic(using=self.using)``, held by ``owner``.

        Raises:
            BadTransactionStateError: No such transaction is open.
        """
        if not connections[self.using].in_atomic_block:
            raise BadTransactionStateError(
                f"transactional=True needs an open transaction.atomic(using={self.using!r}); call the task inside one."
            )
        row = _row_from_request(request)
        row.claimed_by = owner
        row.save(using=self.using, force_insert=True)
        return int(row.pk)

    def after_commit(self, callback: Callable[[], object]) -> None:
        """``transaction.on_commit(callback, using=self.using)``; its errors reach the committer."""
        transaction.on_commit(callback, using=self.using)

    def claim(self, key: int, owner: str, seconds: float, older_than: float | None) -> bool:
        """One conditional ``UPDATE``: takes an unsent row that is ``owner``'s, or whose claim ended long enough ago."""
        now = timezone.now()
        free = Q(claimed_by=owner)
        if older_than is not None:
            free |= Q(claimed_until__lte=now - dt.timedelta(seconds=older_than))
        updated: int = self._write(
            lambda: (
                self._rows()
                .filter(free, pk=key, sent_at__isnull=True)
                .update(claimed_by=owner, claimed_until=now + dt.timedelta(seconds=seconds))
            )
        )
        return updated == 1

    def release(self, key: int, owner: str) -> None:
        """Ends ``owner``'s claim now (its ``claimed_until`` becomes now)."""
        now = timezone.now()
        self._write(
            lambda: self._rows().filter(pk=key, claimed_by=owner, sent_at__isnull=True).update(claimed_until=now)
        )

    def mark_sent(self, key: int) -> None:
        """Sets the row's ``sent_at`` (committed at once: this runs outside any transaction)."""
        now = timezone.now()
        self._write(lambda: self._rows().filter(pk=key, sent_at__isnull=True).update(sent_at=now))

    def mark_delivered(self, name: str) -> bool:
        """Sets ``sent_at`` of the unsent row named ``name``: the endpoint received its task (one ``UPDATE``).

        Outside a transaction (a task endpoint's request, as Django serves
        it) the ``UPDATE`` commits at once, before the task runs and whatever
        it does, and is retried once on a fresh connection if the database
        failed. Inside one (``ATOMIC_REQUESTS``, a ``TestCase``) it runs in a
        savepoint of it, so that a failure leaves the transaction usable, and
        commits with it.

        Args:
            name: The task's name.

        Returns:
            Whether a row was marked.
        """
        now = timezone.now()

        def update() -> int:
            return int(self._rows().filter(name=name, sent_at__isnull=True).update(sent_at=now))

        if connections[self.using].in_atomic_block:
            with transaction.atomic(using=self.using):
                return update() == 1
        return self._write(update) == 1

    def due(self, older_than: float, after: int | None, limit: int) -> list[tuple[int, TaskRequest]]:
        """Starts the clock of rows never claimed, then returns unsent rows whose claim ended ``older_than`` ago."""
        now = timezone.now()
        self._rows().filter(sent_at__isnull=True, claimed_until__isnull=True).update(claimed_until=now)
        rows = self._rows().filter(sent_at__isnull=True, claimed_until__lte=now - dt.timedelta(seconds=older_than))
        if after is not None:
            rows = rows.filter(pk__gt=after)
        return [(int(row.pk), _request_from_row(row)) for row in rows.order_by("pk")[:limit]]

    def purge_sent(self) -> int:
        """Deletes the rows marked sent."""
        deleted, _ = self._rows().filter(sent_at__isnull=False).delete()
        return int(deleted)

    def _rows(self) -> QuerySet[OutboxTask]:
        return OutboxTask.objects.using(self.using)

    def _write(self, operation: Callable[[], T]) -> T:
        """Runs an idempotent write; outside a transaction, once more on a fresh connection if the database failed."""
        try:
            return operation()
        except DatabaseError:
            connection = connections[self.using]
            if connection.in_atomic_block:
                raise
            logger.warning("The outbox database %r failed; retrying on a fresh connection.", self.using, exc_info=True)
            connection.close()
            return operation()

    def __repr__(self) -> str:
        return f"DjangoOutboxStorage(using={self.using!r})"


def enqueue_on_commit(
    request: TaskRequest, transport: Transport, *, using: str = DEFAULT_DB_ALIAS, lease: float | None = None
) -> str:
    """Writes a task to the outbox in the open transaction and sends it after commit.

    Args:
        request: The task; it gets a fresh name unless it has one.
        transport: Where to send it after commit.
        using: Alias of the database whose transaction is open.
        lease: Seconds the send after commit holds its claim; ``IM_TASK["CLAIM_SECONDS"]`` (30) when None.

    Returns:
        The task's name.

    Raises:
        TaskTooLargeError: The task is over the transport's size limit (known
            now, rather than after commit).
        BadTransactionStateError: Not inside ``transaction.atomic(using=using)``.
        ConfigurationError: ``lease`` is not a number of seconds > 0.
    """
    seconds = get_app_settings().claim_seconds if lease is None else lease
    return outbox.enqueue_on_commit(DjangoOutboxStorage(using), request, transport, lease=seconds)


def sweep_outbox(
    older_than: float | None = None,
    *,
    using: str | None = None,
    transport: Transport | None = None,
    limit: int | None = None,
    lease: float | None = None,
) -> SweepResult:
    """Deletes the outbox rows marked sent, and sends the tasks that were not sent after their commit.

    Run it from cron (``manage.py im_task_sweep``) or as a periodic task;
    several may run at once. See :func:`im_task.outbox.sweep`: each row is
    claimed before it is sent, so no row is sent by two parties; a row whose
    send raises anything counts as failed and stays for the next sweep.

    Args:
        older_than: Only rows whose commit a sweep saw, or whose last claim
            ended, at least this many seconds ago; ``IM_TASK["SWEEP_OLDER_THAN"]`` (60) when None.
        using: Database alias of the outbox; ``IM_TASK["DATABASE"]`` when None.
        transport: Where to send; the transport in force when None.
        limit: Most rows to handle in this call; all when None.
        lease: Seconds each claim lasts; ``IM_TASK["CLAIM_SECONDS"]`` (30) when None.

    Returns:
        Counts of what was sent, found already sent, failed, taken by another sender, and purged.

    Raises:
        ConfigurationError: For a negative ``older_than``, a ``limit`` below 1,
            a ``lease`` not > 0, or an unknown database alias.
    """
    app_settings = get_app_settings()
    seconds = app_settings.sweep_older_than if older_than is None else older_than
    claim = app_settings.claim_seconds if lease is None else lease
    outbox.check_sweep_arguments(seconds, limit, claim)
    alias = using or app_settings.database
    if alias not in connections:
        raise ConfigurationError(f"Database {alias!r} is not in settings.DATABASES; pass using= one of them.")
    queue = transport or runtime.get_transport()
    return outbox.sweep(DjangoOutboxStorage(alias), queue, older_than=seconds, limit=limit, lease=claim)


def _row_from_request(request: TaskRequest) -> OutboxTask:
    options = request.retry_options
    return OutboxTask(
        name=request.name or outbox_task_name(),
        queue=request.queue,
        url=request.url,
        body=request.body,
        headers=dict(request.headers),
        schedule_time=_to_db(request.schedule_time),
        target=request.target,
        dispatch_deadline=request.dispatch_deadline,
        retry_options=options.to_dict() if options else None,
    )


def _request_from_row(row: OutboxTask) -> TaskRequest:
    options: Any = row.retry_options
    return TaskRequest(
        queue=row.queue,
        url=row.url,
        body=bytes(row.body),
        headers={str(k): str(v) for k, v in dict(row.headers or {}).items()},
        name=row.name,
        schedule_time=_from_db(row.schedule_time),
        target=row.target,
        dispatch_deadline=row.dispatch_deadline,
        retry_options=RetryOptions(**options) if options else None,
    )


def _to_db(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None or settings.USE_TZ:
        return moment
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)  # stored as naive UTC


def _from_db(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    if timezone.is_naive(moment):
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)
