"""Sweeping the outbox: re-sending the transactional tasks a process committed but did not send.

:func:`sweep_outbox` (``im_task.sweep_outbox``) sweeps the outbox of every
registered transaction binder that has one (``binder.outbox_storage``, as
:class:`im_task.ndb.NdbTransactionBinder` has), with
:func:`im_task.outbox.sweep`. Run it from cron: every adapter serves
:data:`SWEEP_PATH` (see :mod:`im_task.endpoints`), and ``im-task sweep``
runs it from a shell.

Example:
    >>> import im_task
    >>> im_task.sweep_outbox(older_than=60)  # doctest: +SKIP
    SweepResult(sent=0, already_sent=0, failed=0, taken=0, purged=3)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import IO, Any

from im_task import outbox, runtime
from im_task.caller import on_app_engine
from im_task.config import get_settings
from im_task.errors import ConfigurationError
from im_task.headers import Headers
from im_task.outbox import OutboxStorage, SweepResult
from im_task.response import TaskResponse, answer
from im_task.state import STATE
from im_task.transports.base import Transport

__all__ = ["DEFAULT_OLDER_THAN", "handle_sweep_request", "outbox_storages", "sweep_outbox"]

logger = logging.getLogger("im_task")

#: Seconds a committed row waits, after its send's claim ends, before a sweep sends it.
DEFAULT_OLDER_THAN = 60.0


def outbox_storages() -> list[OutboxStorage[Any]]:
    """The outboxes of the registered transaction binders (those with an ``outbox_storage``)."""
    with STATE.lock:
        binders = list(STATE.binders)
    storages = [getattr(binder, "outbox_storage", None) for binder in binders]
    return [storage for storage in storages if storage is not None]


def sweep_outbox(
    older_than: float = DEFAULT_OLDER_THAN,
    *,
    limit: int | None = None,
    transport: Transport | None = None,
    storage: OutboxStorage[Any] | None = None,
    lease: float = outbox.CLAIM_SECONDS,
) -> SweepResult:
    """Sends the transactional tasks committed but not sent, and deletes the outbox rows marked sent.

    A task sent twice keeps its name (derived from its outbox entry), so a
    queue that refuses reused names refuses the second copy.

    Args:
        older_than: Only rows whose send's claim ended (or that a sweep first saw committed) at least this many
            seconds ago, so that sends under way are left alone.
        limit: Most rows to handle in each outbox; all when None.
        transport: Where to send; the transport in force when None.
        storage: The outbox to sweep; every registered binder's when None.
        lease: Seconds each claim lasts: the longest a send may take.

    Returns:
        The counts, summed over the outboxes.

    Raises:
        ConfigurationError: For a bad argument, or when no outbox is installed (call
            :func:`im_task.ndb.install_outbox` at start-up; Django has ``manage.py im_task_sweep``).
    """
    outbox.check_sweep_arguments(older_than, limit, lease)
    if transport is not None and not isinstance(transport, Transport):
        raise ConfigurationError(f"transport must be a Transport or None, not {type(transport).__name__}.")
    storages = [storage] if storage is not None else outbox_storages()
    if not storages:
        raise ConfigurationError(
            "No outbox to sweep: install one at start-up (im_task.ndb.install_outbox() for google-cloud-ndb), "
            "or pass storage=. Django's outbox is swept by 'manage.py im_task_sweep'."
        )
    queue = transport or runtime.get_transport()
    totals = SweepResult()
    for each in storages:
        result = outbox.sweep(each, queue, older_than=older_than, limit=limit, lease=lease)
        totals = SweepResult(
            **{f.name: getattr(totals, f.name) + getattr(result, f.name) for f in dataclasses.fields(SweepResult)}
        )
    return totals


def handle_sweep_request(
    method: str,
    path: str,
    body: bytes | IO[bytes],
    headers: Mapping[str, str],
    remote_addr: str | None = None,
) -> TaskResponse:
    """Serves the sweep route, for cron: sweeps every installed outbox and answers the counts.

    In production only App Engine's cron may call it (``X-Appengine-Cron: true``,
    which App Engine strips from outside requests); in production outside App
    Engine, where nothing strips that header, every request is refused (run
    ``im-task sweep`` from a scheduled job instead); anyone may in development.
    ``GET`` (cron's method) and ``POST`` are accepted; ``?older_than=`` is not
    read: cron sweeps with :data:`DEFAULT_OLDER_THAN`.

    Args:
        method: The HTTP method.
        path: The request path.
        body: Not read.
        headers: The request headers.
        remote_addr: The caller's address.

    Returns:
        200 with the counts; 403 for a caller that is not cron in production; 405 for another method;
        500 when nothing can be swept (no outbox installed, or the transport cannot be made).
    """
    if method.upper() not in ("GET", "POST"):
        return answer(405, "Method Not Allowed: the sweep route takes GET (cron) or POST.", Allow="GET, POST")
    view = headers if isinstance(headers, Headers) else Headers(headers)
    try:
        production = get_settings().production
    except ConfigurationError as exc:
        logger.error("Outbox sweep not run: %s", exc)
        return answer(500, "im-task is misconfigured; see the server log.", exc)
    # X-Appengine-Cron proves App Engine cron only on App Engine, whose front end strips it from outside requests.
    if production and not (on_app_engine() and view.get("X-Appengine-Cron", "").lower() == "true"):
        where = "not App Engine cron" if on_app_engine() else "outside App Engine nothing proves the caller is cron"
        source = repr(remote_addr) if remote_addr else "an unknown address"
        logger.warning("Refused the outbox sweep (%r) from %s: %s.", path, source, where)
        return answer(403, "Forbidden: the sweep route is for App Engine cron.")
    try:
        result = sweep_outbox()
    except ConfigurationError as exc:
        logger.error("Outbox sweep not run: %s", exc)
        return answer(500, "The outbox sweep could not run; see the server log.", exc)
    except Exception as exc:
        logger.exception("The outbox sweep failed; the next one goes on.")
        return answer(500, "The outbox sweep failed; see the server log.", exc)
    counts = ", ".join(f"{f.name}={getattr(result, f.name)}" for f in dataclasses.fields(SweepResult))
    return answer(200, f"Swept: {counts}")
