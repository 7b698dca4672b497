"""Transactional tasks on google-cloud-ndb: an outbox kind written in ``ndb.transaction()``, sent after commit.

``transactional=True`` inside ``ndb.transaction()`` (or an
``@ndb.transactional`` function) writes the task to the outbox kind
(``_ImTaskOutbox``) in the same transaction, through the core's outbox
algorithm (:mod:`im_task.outbox`); ``call_on_commit`` sends it after the
commit, and :func:`im_task.sweep_outbox` re-sends what a dead process left.
A rollback leaves no task (and no payload: :class:`~im_task.stores.NdbPayloadStore`
writes large payloads in the same transaction); an attempt that ndb retries
leaves nothing either, since its entities and its callbacks are dropped.

The send after commit runs in a non-transactional context: ndb still says
``in_transaction()`` inside a commit callback, and writing the sent mark
there would join the finished transaction.

The task endpoint writes to the outbox kind too: when the queue delivers an
outbox task (its name starts with ``outbox-``), the endpoint marks its entity
sent before running it (:meth:`NdbOutboxStorage.mark_delivered`, one lookup
and one write in a Datastore transaction), so that a sweep never sends again
a task whose sender died after the queue took it.

Example:
    >>> from google.cloud import ndb  # doctest: +SKIP
    >>> from im_task.ndb import install_outbox
    >>> install_outbox()  # once, at start-up  # doctest: +SKIP
    >>> @ndb.transactional()  # doctest: +SKIP
    ... def pay(order_key):
    ...     order = order_key.get()
    ...     order.paid = True
    ...     order.put()
    ...     send_receipt.using(transactional=True)(order_key.id())
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.cloud import ndb  # type: ignore[attr-defined]

from im_task import outbox
from im_task.errors import BadTransactionStateError, ConfigurationError
from im_task.retry import RetryOptions
from im_task.stores.ndb import check_kind, kind_model, models_of_kind, ndb_context, outside_transaction, utc_now
from im_task.transactions import register_binder, unregister_binder
from im_task.transports.base import TaskRequest, Transport

__all__ = ["DEFAULT_OUTBOX_KIND", "NdbOutboxStorage", "NdbTransactionBinder", "install_outbox", "uninstall_outbox"]

#: The kind of outbox entities unless another is given.
DEFAULT_OUTBOX_KIND = "_ImTaskOutbox"
T = TypeVar("T")


def _outbox_model(kind: str) -> type[ndb.Model]:
    def make(kind: str, number: int) -> type[ndb.Model]:
        return kind_model(
            kind,
            f"OutboxEntry_{number}",
            name=ndb.TextProperty(),
            queue=ndb.TextProperty(),
            url=ndb.TextProperty(),
            body=ndb.BlobProperty(),
            headers=ndb.JsonProperty(),
            schedule_time=ndb.DateTimeProperty(indexed=False),
            target=ndb.TextProperty(),
            dispatch_deadline=ndb.FloatProperty(indexed=False),
            retry_options=ndb.JsonProperty(),
            owner=ndb.TextProperty(),
            claimed_until=ndb.DateTimeProperty(indexed=False),
            sent=ndb.BooleanProperty(),
        )

    return models_of_kind("outbox", kind, make)


class NdbOutboxStorage:
    """The :class:`~im_task.outbox.OutboxStorage` of google-cloud-ndb: entities of one kind, keyed by random ids.

    An entity's id is the random part of its task's outbox name
    (``outbox-<id>``), so the task endpoint finds it by the task name
    (:meth:`mark_delivered`). Claims, releases, clock starts and delivery
    marks are Datastore transactions (compare and set); every call but
    :meth:`add` runs outside the caller's transaction.

    Args:
        client: The ``ndb.Client`` of the contexts opened when none is open (sweeps from cron or the command
            line); one made from the environment when None.
        kind: The outbox kind.

    Raises:
        ConfigurationError: For a bad kind or client.
    """

    def __init__(self, client: ndb.Client | None = None, *, kind: str = DEFAULT_OUTBOX_KIND) -> None:
        if client is not None and not isinstance(client, ndb.Client):
            raise ConfigurationError(f"client must be a google.cloud.ndb.Client or None, not {type(client).__name__}.")
        self.client = client
        self.kind = check_kind(kind)
        self._model = _outbox_model(self.kind)

    def _call(self, func: Callable[[], T]) -> T:
        """``func`` in a context of its own, never in the caller's transaction."""
        return ndb_context(self.client, outside_transaction(func))

    def add(self, request: TaskRequest, owner: str) -> str:
        """Writes the task's entity in the open ndb transaction.

        Raises:
            BadTransactionStateError: No ndb transaction is open.
        """
        if ndb.get_context(raise_context_error=False) is None or not ndb.in_transaction():
            raise BadTransactionStateError(
                "transactional=True with the ndb outbox needs an open ndb.transaction(); call the task inside one."
            )
        key = _key_of(request.name) or outbox.outbox_task_name().removeprefix(outbox.NAME_PREFIX)
        options = request.retry_options
        deadline = request.dispatch_deadline
        self._model(
            id=key,
            name=request.name,
            queue=request.queue,
            url=request.url,
            body=request.body,
            headers=dict(request.headers),
            schedule_time=_naive(request.schedule_time),
            target=request.target,
            dispatch_deadline=None if deadline is None else deadline.total_seconds(),
            retry_options=options.to_dict() if options else None,
            owner=owner,
            claimed_until=None,
            sent=False,
        ).put(use_cache=False)
        return key

    def after_commit(self, callback: Callable[[], object]) -> None:
        """``call_on_commit``, the callback run outside the finished transaction (its errors reach the committer)."""

        def outside() -> None:
            with ndb.get_context().new(transaction=None).use():
                callback()

        ndb.get_context().call_on_commit(outside)

    def claim(self, key: str, owner: str, seconds: float, older_than: float | None) -> bool:
        """Takes the entity in a Datastore transaction (see :meth:`OutboxStorage.claim`)."""

        def take() -> bool:
            entry: Any = ndb.Key(self.kind, key).get(use_cache=False)
            if entry is None or entry.sent:
                return False
            now = utc_now()
            ended = (
                older_than is not None
                and entry.claimed_until is not None
                and entry.claimed_until <= now - dt.timedelta(seconds=older_than)
            )
            if entry.owner != owner and not ended:
                return False
            entry.owner = owner
            entry.claimed_until = now + dt.timedelta(seconds=seconds)
            entry.put(use_cache=False)
            return True

        return self._call(lambda: bool(ndb.transaction(take, retries=3)))

    def release(self, key: str, owner: str) -> None:
        """Ends ``owner``'s claim now, in a Datastore transaction."""

        def end() -> None:
            entry: Any = ndb.Key(self.kind, key).get(use_cache=False)
            if entry is not None and not entry.sent and entry.owner == owner:
                entry.claimed_until = utc_now()
                entry.put(use_cache=False)

        self._call(lambda: ndb.transaction(end, retries=3))

    def mark_sent(self, key: str) -> None:
        """Marks the entity sent (one durable write); an entity already gone is fine."""

        def mark() -> None:
            entry: Any = ndb.Key(self.kind, key).get(use_cache=False)
            if entry is not None and not entry.sent:
                entry.sent = True
                entry.put(use_cache=False)

        self._call(mark)

    def mark_delivered(self, name: str) -> bool:
        """Marks the unsent entity of the task named ``name`` sent (the endpoint got it), in a Datastore transaction.

        The entity is found by its key, the hexadecimal part of the outbox
        name (a lookup, strongly consistent), outside any transaction of the
        caller's.

        Args:
            name: The task's name.

        Returns:
            Whether an entity was marked.
        """
        key = _key_of(name)
        if key is None:
            return False

        def mark() -> bool:
            entry: Any = ndb.Key(self.kind, key).get(use_cache=False)
            if entry is None or entry.sent or entry.name != name:
                return False
            entry.sent = True
            entry.put(use_cache=False)
            return True

        return self._call(lambda: bool(ndb.transaction(mark, retries=3)))

    def due(self, older_than: float, after: str | None, limit: int) -> Sequence[tuple[str, TaskRequest]]:
        """Unsent entities whose claim ended ``older_than`` seconds ago, by key; starts the clock of unclaimed ones."""

        def scan() -> list[tuple[str, TaskRequest]]:
            model: Any = self._model
            query = model.query(model.sent == False).order(model.key)  # noqa: E712 - a Datastore filter
            if after is not None:
                query = query.filter(model.key > ndb.Key(self.kind, after))
            found: list[tuple[str, TaskRequest]] = []
            for entry in query.iter(use_cache=False):
                until = entry.claimed_until
                if until is None:
                    until = self._start_clock(entry.key)
                if until is not None and until <= utc_now() - dt.timedelta(seconds=older_than):
                    found.append((str(entry.key.id()), _request(entry)))
                    if len(found) >= limit:
                        break
            return found

        return self._call(scan)

    def _start_clock(self, key: ndb.Key) -> dt.datetime | None:
        def start() -> dt.datetime | None:
            entry: Any = key.get(use_cache=False)
            if entry is None or entry.sent:
                return None
            if entry.claimed_until is None:
                entry.claimed_until = utc_now()
                entry.put(use_cache=False)
            moment: dt.datetime = entry.claimed_until
            return moment

        result: dt.datetime | None = ndb.transaction(start, retries=3)
        return result

    def purge_sent(self) -> int:
        """Deletes the entities marked sent; returns how many."""

        def purge() -> int:
            model: Any = self._model
            keys = list(model.query(model.sent == True).iter(keys_only=True))  # noqa: E712 - a Datastore filter
            for start in range(0, len(keys), 500):
                ndb.delete_multi(keys[start : start + 500], use_cache=False)
            return len(keys)

        return self._call(purge)

    def entries(self) -> list[dict[str, Any]]:
        """Every entity as a dict (for tests and inspection)."""

        def listing() -> list[dict[str, Any]]:
            model: Any = self._model
            return [{"key": e.key.id(), **e.to_dict(exclude=["body"])} for e in model.query().iter(use_cache=False)]

        return self._call(listing)

    def __repr__(self) -> str:
        return f"NdbOutboxStorage(kind={self.kind!r})"


class NdbTransactionBinder:
    """Joins ``transactional=True`` tasks to the open ndb transaction, through :class:`NdbOutboxStorage`.

    Register it with :func:`install_outbox`.

    Args:
        storage: The outbox.
        lease: Seconds the send after commit holds its claim (see :func:`im_task.outbox.enqueue_on_commit`).
    """

    description = "google-cloud-ndb's ndb.transaction() (im_task.ndb.install_outbox())"

    def __init__(self, storage: NdbOutboxStorage, *, lease: float = outbox.CLAIM_SECONDS) -> None:
        if not isinstance(storage, NdbOutboxStorage):
            raise ConfigurationError(f"storage must be an NdbOutboxStorage, not {type(storage).__name__}.")
        outbox.check_sweep_arguments(0, None, lease)
        self.outbox_storage = storage
        self.lease = float(lease)

    def in_transaction(self) -> bool:
        """Whether an ndb transaction is open in this context (never inside the outbox's own commit callbacks)."""
        return ndb.get_context(raise_context_error=False) is not None and bool(ndb.in_transaction())

    def enqueue_on_commit(self, request: TaskRequest, transport: Transport) -> str:
        """Writes the task to the outbox in the transaction; sends it after commit."""
        return outbox.enqueue_on_commit(self.outbox_storage, request, transport, lease=self.lease)

    def __repr__(self) -> str:
        return f"NdbTransactionBinder({self.outbox_storage!r})"


def install_outbox(
    client: ndb.Client | None = None, *, kind: str = DEFAULT_OUTBOX_KIND, lease: float = outbox.CLAIM_SECONDS
) -> NdbTransactionBinder:
    """Makes ``transactional=True`` join ndb transactions, through an outbox of ``kind``; call it once at start-up.

    Args:
        client: The ``ndb.Client`` of contexts the outbox opens (sweeps); from the environment when None.
        kind: The outbox kind.
        lease: Seconds a send holds its claim.

    Returns:
        The registered binder (give it to :func:`uninstall_outbox` to undo).

    Raises:
        ConfigurationError: For a bad argument.
    """
    binder = NdbTransactionBinder(NdbOutboxStorage(client, kind=kind), lease=lease)
    register_binder(binder)
    return binder


def uninstall_outbox(binder: NdbTransactionBinder) -> None:
    """Undoes :func:`install_outbox`."""
    unregister_binder(binder)


def _key_of(name: str | None) -> str | None:
    """The entity id of an outbox task: its name's random part, so the endpoint finds it; None for other names."""
    if name is None or not outbox.is_outbox_task_name(name):
        return None
    return name.removeprefix(outbox.NAME_PREFIX)


def _naive(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _request(entry: Any) -> TaskRequest:
    deadline = entry.dispatch_deadline
    when = entry.schedule_time
    return TaskRequest(
        queue=entry.queue,
        url=entry.url,
        body=bytes(entry.body or b""),
        headers={str(k): str(v) for k, v in dict(entry.headers or {}).items()},
        name=entry.name,
        schedule_time=None if when is None else when.replace(tzinfo=dt.timezone.utc),
        target=entry.target,
        dispatch_deadline=None if deadline is None else dt.timedelta(seconds=deadline),
        retry_options=RetryOptions(**entry.retry_options) if entry.retry_options else None,
    )
