"""Writing ``transactional=True`` tasks to the outbox, sending them after commit, sweeping the rest.

A task is written to :class:`~im_task_django.models.OutboxTask` in the
caller's transaction, so a rollback leaves nothing, and is sent by a
``transaction.on_commit`` callback, which deletes the row. If the process
dies between the commit and the send, or the queue cannot be reached, the
row stays and :func:`sweep_outbox` (``manage.py im_task_sweep``, from cron or
as a task) sends it later; so does any error of the transport. Only a
transport that runs tasks inline (``Transport.runs_inline``, e.g.
``ImmediateTransport``) has the row deleted when the send raises: the task
ran, and its error reaches the committer. Each row carries its task name
from the start, so a task sent twice is refused by the queue
(``TaskAlreadyExistsError``) rather than run twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from im_task import config, runtime
from im_task.errors import (
    BadTransactionStateError,
    ConfigurationError,
    EnqueueError,
    TaskAlreadyExistsError,
    TaskTooLargeError,
)
from im_task.retry import RetryOptions
from im_task.transports.base import TaskRequest, Transport, task_size
from im_task_django.conf import get_app_settings
from im_task_django.models import OutboxTask

__all__ = ["SweepResult", "enqueue_on_commit", "outbox_task_name", "sweep_outbox"]

logger = logging.getLogger("im_task.django")

#: Prefix of the names of tasks sent through the outbox.
NAME_PREFIX = "outbox-"
#: Rows a sweep reads at a time.
SWEEP_BATCH = 100


def outbox_task_name() -> str:
    """A fresh task name for an outbox row: random, so never one a queue has seen."""
    return f"{NAME_PREFIX}{uuid.uuid4().hex}"


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
    if not connections[using].in_atomic_block:
        raise BadTransactionStateError(
            f"transactional=True needs an open transaction.atomic(using={using!r}); call the task inside one."
        )
    size = task_size(request)
    if size > transport.max_task_size:
        raise TaskTooLargeError(f"The task is {size} bytes; the queue takes at most {transport.max_task_size}.")
    named = request if request.name else replace(request, name=outbox_task_name())
    row = _row_from_request(named)
    row.save(using=using, force_insert=True)
    transaction.on_commit(lambda: _send_after_commit(row.pk, named, transport, using), using=using)
    return str(named.name)


def _send_after_commit(pk: int, request: TaskRequest, transport: Transport, using: str) -> None:
    try:
        transport.enqueue(request)
    except TaskAlreadyExistsError:
        pass  # a sweeper sent it first
    except EnqueueError:
        logger.warning(
            "Could not send transactional task %s (%s) after commit; it stays in the outbox for im_task_sweep.",
            request.name,
            request.url,
            exc_info=True,
        )
        return
    except Exception:
        if transport.runs_inline:  # the task ran (ImmediateTransport) and this is its own error
            _delete(pk, using)
            raise
        # A transport that breaks its contract (e.g. a raw ConnectionResetError): the task may not be queued.
        logger.error(
            "Could not send transactional task %s (%s) after commit; the transport raised an unexpected error. "
            "It stays in the outbox for im_task_sweep.",
            request.name,
            request.url,
            exc_info=True,
        )
        return
    _delete(pk, using)


def _delete(pk: int, using: str) -> None:
    OutboxTask.objects.using(using).filter(pk=pk).delete()


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did.

    Attributes:
        sent: Tasks sent now.
        already_sent: Tasks the queue already had (refused by name), now removed.
        failed: Tasks that could not be sent; they stay for the next sweep.
    """

    sent: int = 0
    already_sent: int = 0
    failed: int = 0


def sweep_outbox(
    older_than: float | None = None,
    *,
    using: str | None = None,
    transport: Transport | None = None,
    limit: int | None = None,
) -> SweepResult:
    """Sends the outbox tasks that were not sent after their commit.

    Run it from cron (``manage.py im_task_sweep``) or as a periodic task. A
    task sent twice keeps its name, so the queue refuses the second copy. A
    row whose send raises anything (an ``EnqueueError``, another error of
    the transport, or with an inline transport the task's own error) counts
    as failed and stays for the next sweep; the sweep goes on with the rest.

    Args:
        older_than: Only rows written at least this many seconds ago, so
            that tasks being sent right now are left alone;
            ``IM_TASK["sweep_older_than"]`` (60) when None.
        using: Database alias of the outbox; ``IM_TASK["database"]`` when None.
        transport: Where to send; the configured transport when None.
        limit: Most rows to handle in this call; all when None.

    Returns:
        Counts of what was sent, found already sent, and failed.

    Raises:
        ConfigurationError: For a negative ``older_than`` or ``limit``, or an
            unknown database alias.
    """
    app_settings = get_app_settings()
    if older_than is None:
        older_than = app_settings.sweep_older_than
    if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or not older_than >= 0:
        raise ConfigurationError(f"older_than must be a number of seconds >= 0, not {older_than!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigurationError(f"limit must be a whole number >= 1 or None, not {limit!r}.")
    alias = using or app_settings.database
    if alias not in connections:
        raise ConfigurationError(f"Database {alias!r} is not in settings.DATABASES; pass using= one of them.")
    queue = transport or runtime.get_transport()
    cutoff = timezone.now() - dt.timedelta(seconds=older_than)
    rows = OutboxTask.objects.using(alias).filter(created__lte=cutoff).order_by("pk")
    sent = already_sent = failed = 0
    for row in _batches(rows, limit):
        try:
            queue.enqueue(_request_from_row(row))
        except TaskAlreadyExistsError:
            already_sent += 1
        except EnqueueError:
            logger.warning("Could not send outbox task %s (%s); it stays.", row.name, row.url, exc_info=True)
            failed += 1
            continue
        except Exception:  # a transport breaking its contract, or the task's own error from an inline one
            logger.error(
                "Could not send outbox task %s (%s): unexpected error; it stays.", row.name, row.url, exc_info=True
            )
            failed += 1
            continue
        else:
            sent += 1
        _delete(row.pk, alias)
    if sent or already_sent or failed:
        logger.info("Outbox sweep: %d sent, %d already sent, %d failed.", sent, already_sent, failed)
    return SweepResult(sent=sent, already_sent=already_sent, failed=failed)


def _batches(rows: QuerySet[OutboxTask], limit: int | None) -> Iterator[OutboxTask]:
    """The rows, read a batch at a time (rows are deleted meanwhile, so no open cursor), at most ``limit``."""
    last_pk, remaining = 0, limit
    while remaining is None or remaining > 0:
        size = SWEEP_BATCH if remaining is None else min(SWEEP_BATCH, remaining)
        batch = list(rows.filter(pk__gt=last_pk)[:size])
        yield from batch
        if len(batch) < size:
            return
        last_pk = batch[-1].pk
        if remaining is not None:
            remaining -= len(batch)


def _row_from_request(request: TaskRequest) -> OutboxTask:
    options = request.retry_options
    return OutboxTask(
        name=request.name,
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
