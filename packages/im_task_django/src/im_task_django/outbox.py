"""The outbox of ``transactional=True`` tasks in Django's ORM: the storage the core's outbox algorithm runs on.

The algorithm (write in the transaction, send after commit, a reused name
counts as sent, keep the row on any send error but an inline transport's,
sweep in batches) is :mod:`im_task.outbox`'s. This module gives it
:class:`DjangoOutboxStorage`, rows of :class:`~im_task_django.models.OutboxTask`
written in ``transaction.atomic()`` and sent by a ``transaction.on_commit``
callback, and the two calls the app makes: :func:`enqueue_on_commit` (for
the transaction binder) and :func:`sweep_outbox` (``manage.py
im_task_sweep``, from cron or as a task).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from im_task import outbox, runtime
from im_task.errors import BadTransactionStateError, ConfigurationError
from im_task.outbox import SweepResult, outbox_task_name
from im_task.retry import RetryOptions
from im_task.transports.base import TaskRequest, Transport
from im_task_django.conf import get_app_settings
from im_task_django.models import OutboxTask

__all__ = ["DjangoOutboxStorage", "SweepResult", "enqueue_on_commit", "outbox_task_name", "sweep_outbox"]


class DjangoOutboxStorage:
    """The :class:`~im_task.outbox.OutboxStorage` of Django: the ``im_task_outbox`` table of one database.

    Keys are the rows' primary keys.

    Args:
        using: Alias of the database holding the table, whose ``transaction.atomic()`` tasks join.

    Example:
        >>> from im_task.outbox import sweep
        >>> sweep(DjangoOutboxStorage("default"), transport, older_than=60)  # doctest: +SKIP
        SweepResult(sent=0, already_sent=0, failed=0)
    """

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using

    def add(self, request: TaskRequest) -> int:
        """Writes the task's row in the open ``transaction.atomic(using=self.using)``.

        Raises:
            BadTransactionStateError: No such transaction is open.
        """
        if not connections[self.using].in_atomic_block:
            raise BadTransactionStateError(
                f"transactional=True needs an open transaction.atomic(using={self.using!r}); call the task inside one."
            )
        row = _row_from_request(request)
        row.save(using=self.using, force_insert=True)
        return int(row.pk)

    def after_commit(self, callback: Callable[[], object]) -> None:
        """``transaction.on_commit(callback, using=self.using)``; its errors reach the committer."""
        transaction.on_commit(callback, using=self.using)

    def mark_sent(self, key: int) -> None:
        """Deletes the row (a row already deleted is fine)."""
        OutboxTask.objects.using(self.using).filter(pk=key).delete()

    def unsent(self, older_than: float, after: int | None, limit: int) -> list[tuple[int, TaskRequest]]:
        """Rows written at least ``older_than`` seconds ago, by primary key, after ``after``, at most ``limit``."""
        cutoff = timezone.now() - dt.timedelta(seconds=older_than)
        rows = OutboxTask.objects.using(self.using).filter(created__lte=cutoff)
        if after is not None:
            rows = rows.filter(pk__gt=after)
        return [(int(row.pk), _request_from_row(row)) for row in rows.order_by("pk")[:limit]]

    def __repr__(self) -> str:
        return f"DjangoOutboxStorage(using={self.using!r})"


def enqueue_on_commit(request: TaskRequest, transport: Transport, *, using: str = DEFAULT_DB_ALIAS) -> str:
    """Writes a task to the outbox in the open transaction and sends it after commit.

    Args:
        request: The task; it gets a fresh name unless it has one.
        transport: Where to send it after commit.
        using: Alias of the database whose transaction is open.

    Returns:
        The task's name.

    Raises:
        TaskTooLargeError: The task is over the transport's size limit (known
            now, rather than after commit).
        BadTransactionStateError: Not inside ``transaction.atomic(using=using)``.
    """
    return outbox.enqueue_on_commit(DjangoOutboxStorage(using), request, transport)


def sweep_outbox(
    older_than: float | None = None,
    *,
    using: str | None = None,
    transport: Transport | None = None,
    limit: int | None = None,
) -> SweepResult:
    """Sends the outbox tasks that were not sent after their commit.

    Run it from cron (``manage.py im_task_sweep``) or as a periodic task.
    See :func:`im_task.outbox.sweep`: a task sent twice keeps its name, so the
    queue refuses the second copy; a row whose send raises anything counts as
    failed and stays for the next sweep.

    Args:
        older_than: Only rows written at least this many seconds ago, so
            that tasks being sent right now are left alone;
            ``IM_TASK["SWEEP_OLDER_THAN"]`` (60) when None.
        using: Database alias of the outbox; ``IM_TASK["DATABASE"]`` when None.
        transport: Where to send; the transport in force when None.
        limit: Most rows to handle in this call; all when None.

    Returns:
        Counts of what was sent, found already sent, and failed.

    Raises:
        ConfigurationError: For a negative ``older_than`` or ``limit``, or an
            unknown database alias.
    """
    app_settings = get_app_settings()
    seconds = app_settings.sweep_older_than if older_than is None else older_than
    outbox.check_sweep_arguments(seconds, limit)
    alias = using or app_settings.database
    if alias not in connections:
        raise ConfigurationError(f"Database {alias!r} is not in settings.DATABASES; pass using= one of them.")
    queue = transport or runtime.get_transport()
    return outbox.sweep(DjangoOutboxStorage(alias), queue, older_than=seconds, limit=limit)


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
        retry_options={k: v for k, v in asdict(options).items() if v is not None} if options else None,
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
