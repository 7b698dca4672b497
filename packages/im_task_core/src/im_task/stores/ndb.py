"""``NdbPayloadStore``: payloads in Datastore through google-cloud-ndb, split across entities of at most 1 MB.

Datastore limits an entity to 1 MiB, so a payload is written as one head
entity (kind ``kind``, id the payload's key: size, number of chunks, time
written, first chunk) and, past 1,000,000 bytes, child entities of kind
``<kind>Chunk`` with the rest. Inside an ndb transaction every entity is
written in that transaction, so a rollback leaves nothing; a commit carries
them all, which bounds a transactional payload by Datastore's commit size
(10 MiB on the service, about 4 MB on the emulator) and entity count
(500 mutations). Outside a transaction the chunks are written a few at a
time, then the head, so a payload of any size works.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.cloud import ndb  # type: ignore[attr-defined]

from im_task.errors import ConfigurationError
from im_task.stores.base import DEFAULT_ORPHAN_TTL

__all__ = [
    "CHUNK_SIZE",
    "NdbPayloadStore",
    "check_kind",
    "chunk_model",
    "kind_model",
    "models_of_kind",
    "ndb_context",
    "outside_transaction",
    "utc_now",
]

logger = logging.getLogger("im_task")

#: Bytes of payload per entity: under Datastore's 1 MiB entity limit with room for the key and properties.
CHUNK_SIZE = 1_000_000
#: Chunks written or read per call outside a transaction (the emulator takes messages of about 4 MB).
CHUNKS_PER_BATCH = 3
#: Datastore's kind names: no leading "__", at most 1,500 bytes.
_MAX_KIND = 1500

T = TypeVar("T")
_clients_lock = threading.Lock()
_clients: dict[tuple[str | None, str | None], ndb.Client] = {}
M = TypeVar("M")
_models_lock = threading.Lock()
_models: dict[str, dict[str, Any]] = {}


def default_client() -> ndb.Client:
    """The ``ndb.Client()`` of the stores and outboxes given no client, made once per emulator host and project.

    The project comes from the environment (``GOOGLE_CLOUD_PROJECT``, ``DATASTORE_PROJECT_ID``...), the emulator
    from ``DATASTORE_EMULATOR_HOST``.
    """
    where = (os.environ.get("DATASTORE_EMULATOR_HOST"), os.environ.get("DATASTORE_PROJECT_ID"))
    with _clients_lock:
        client = _clients.get(where)
        if client is None:
            client = _clients[where] = ndb.Client()
        return client


def ndb_context(client: ndb.Client | None, func: Callable[[], T]) -> T:
    """Calls ``func`` in the ndb context open here, or in a new one of ``client`` (the default client when None).

    Args:
        client: The client of a new context, when none is open.
        func: What to call, without arguments.

    Returns:
        What ``func`` returned.
    """
    if ndb.get_context(raise_context_error=False) is not None:
        return func()
    with (client or default_client()).context(cache_policy=False, global_cache_policy=False):
        return func()


def outside_transaction(func: Callable[[], T]) -> Callable[[], T]:
    """``func`` made to run outside any ndb transaction open where it is called, in a context of its own.

    Reads and writes the caller never meant to join its transaction (deletes, sweeps, claims, dead letters)
    go through it; unlike ``ndb.non_transactional`` it needs no context to be open when it is made.

    Args:
        func: What to call, without arguments (in an ndb context).

    Returns:
        The function that calls ``func`` outside the transaction.
    """

    def call() -> T:
        if not ndb.in_transaction():
            return func()
        with ndb.get_context().new(transaction=None).use():
            return func()

    return call


def check_kind(kind: object, argument: str = "kind") -> str:
    """Refuses a Datastore kind name Datastore would refuse.

    Raises:
        ConfigurationError: Saying what a kind looks like.
    """
    if not isinstance(kind, str) or not kind or kind.startswith("__") or len(kind.encode()) > _MAX_KIND:
        raise ConfigurationError(
            f"{argument} must be a Datastore kind name (non-empty, not starting with '__'), not {kind!r}."
        )
    return kind


def kind_model(kind: str, class_name: str, /, **properties: ndb.Property) -> type[ndb.Model]:
    """An ndb model class of ``kind`` that neither ndb cache keeps (every read and write goes to Datastore).

    The stores and outboxes are given their kind at run time, so their model classes are made here, not declared.

    Args:
        kind: The Datastore kind of the entities.
        class_name: The class's name (its entities' repr).
        **properties: The model's properties.

    Returns:
        The new model class.
    """
    namespace: dict[str, Any] = {
        "_get_kind": classmethod(lambda cls: kind),
        "_use_cache": False,
        "_use_global_cache": False,
        **properties,
    }
    return type(class_name, (ndb.Model,), namespace)


def chunk_model(kind: str, class_name: str) -> type[ndb.Model]:
    """The model of the ``<kind>Chunk`` entities that carry the bytes past what one entity of ``kind`` holds."""
    return kind_model(kind + "Chunk", class_name, data=ndb.BlobProperty())


def models_of_kind(family: str, kind: str, make: Callable[[str, int], M]) -> M:
    """The model classes ``make(kind, number)`` returns, made once per ``family`` and ``kind`` in this process.

    ndb keeps one class per kind process-wide, so the stores and outboxes of a kind share theirs.

    Args:
        family: Who asks (``"payload"``, ``"outbox"``...): one cache per family.
        kind: The Datastore kind.
        make: Makes the classes from the kind and a number, unique in the family, for the class names.

    Returns:
        What ``make`` returned the first time.
    """
    with _models_lock:
        made = _models.setdefault(family, {})
        if kind not in made:
            made[kind] = make(kind, len(made))
        found: M = made[kind]
        return found


def _payload_models(kind: str) -> tuple[type[ndb.Model], type[ndb.Model]]:
    """The head and chunk model classes of a kind (made once per kind)."""

    def make(kind: str, number: int) -> tuple[type[ndb.Model], type[ndb.Model]]:
        head = kind_model(
            kind,
            f"PayloadHead_{number}",
            size=ndb.IntegerProperty(indexed=False),
            chunks=ndb.IntegerProperty(indexed=False),
            created=ndb.DateTimeProperty(),
            data=ndb.BlobProperty(),
        )
        return head, chunk_model(kind, f"PayloadChunk_{number}")

    return models_of_kind("payload", kind, make)


class NdbPayloadStore:
    """A payload store in Datastore, through google-cloud-ndb (``pip install 'im-task[gcp]'``).

    Uses the ndb context open in the calling thread (your request's
    ``client.context()``), or opens one of ``client`` when there is none (the
    task endpoint of an app without ndb middleware). Inside
    ``ndb.transaction()`` a payload is written in the transaction.

    Args:
        client: The ``ndb.Client`` of the contexts the store opens; one made from the environment when None.
        kind: The kind of the head entities; chunks are ``<kind>Chunk``, children of their head.

    Raises:
        ConfigurationError: For a bad kind or client.

    Example:
        >>> from im_task import configure
        >>> configure(payload_store=NdbPayloadStore(kind="_ImTaskPayload"))  # doctest: +SKIP
    """

    name = "ndb"

    def __init__(self, client: ndb.Client | None = None, *, kind: str = "_ImTaskPayload") -> None:
        if client is not None and not isinstance(client, ndb.Client):
            raise ConfigurationError(f"client must be a google.cloud.ndb.Client or None, not {type(client).__name__}.")
        self.client = client
        self.kind = check_kind(kind)
        self._head, self._chunk = _payload_models(self.kind)

    def _keys(self, key: str, chunks: int) -> list[ndb.Key]:
        head = ndb.Key(self.kind, key)
        return [head] + [ndb.Key(self.kind + "Chunk", index, parent=head) for index in range(1, chunks)]

    def put(self, payload: bytes, *, in_transaction: bool = True) -> str:
        """Stores a payload and returns its new key.

        With ``in_transaction`` the payload is written in the open ndb
        transaction, if any (one commit: a rollback leaves nothing); without,
        outside it (``ndb.non_transactional``), for a task sent at once.

        Raises:
            TypeError: ``payload`` is not bytes.
        """
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"put() takes bytes, not {type(payload).__name__}.")
        data = bytes(payload)
        key = uuid.uuid4().hex
        pieces = [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)] or [b""]

        def write() -> None:
            keys = self._keys(key, len(pieces))  # keys need the context (its project)
            head = self._head(key=keys[0], size=len(data), chunks=len(pieces), created=utc_now(), data=pieces[0])
            chunks = [self._chunk(key=k, data=piece) for k, piece in zip(keys[1:], pieces[1:], strict=True)]
            if ndb.in_transaction():  # one commit: a rollback leaves nothing
                ndb.put_multi([*chunks, head], use_cache=False)
                return
            try:
                for batch in _batches(chunks, CHUNKS_PER_BATCH):
                    ndb.put_multi(batch, use_cache=False)
                head.put(use_cache=False)  # last: a head means every chunk is there
            except BaseException:
                _delete_quietly(keys)  # no headless chunks (nor a head nobody has the key of) are left
                raise

        ndb_context(self.client, write if in_transaction else ndb.non_transactional(allow_existing=True)(write))
        return key

    def get(self, key: str) -> bytes | None:
        """The payload stored under ``key``, or None when it, or one of its chunks, is missing."""

        def read() -> bytes | None:
            head: Any = ndb.Key(self.kind, key).get(use_cache=False)
            if head is None:
                return None
            parts: list[bytes] = [head.data or b""]
            for batch in _batches(self._keys(key, head.chunks or 1)[1:], CHUNKS_PER_BATCH):
                for chunk in ndb.get_multi(batch, use_cache=False):
                    if chunk is None:
                        return None
                    parts.append(chunk.data or b"")
            return b"".join(parts)

        return ndb_context(self.client, read)

    def delete(self, key: str) -> None:
        """Deletes a payload and its chunks; a key already gone is fine."""

        def remove() -> None:
            head = ndb.Key(self.kind, key)
            chunks = ndb.Query(kind=self.kind + "Chunk", ancestor=head).fetch(keys_only=True)
            for batch in _batches([*chunks, head], 500):
                ndb.delete_multi(batch, use_cache=False)

        ndb_context(self.client, outside_transaction(remove))

    def sweep(self, older_than: float = DEFAULT_ORPHAN_TTL) -> int:
        """Deletes payloads written at least ``older_than`` seconds ago; returns how many.

        Raises:
            ConfigurationError: ``older_than`` is not a number >= 0.
        """
        if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or not older_than >= 0:
            raise ConfigurationError(f"older_than must be a number of seconds >= 0, not {older_than!r}.")
        cutoff = utc_now() - dt.timedelta(seconds=older_than)

        def old() -> list[ndb.Key]:
            query: Any = self._head.query(self._head.created <= cutoff)
            return list(query.fetch(keys_only=True))

        keys = ndb_context(self.client, outside_transaction(old))
        for found in keys:
            self.delete(str(found.id()))
        return len(keys)

    def keys(self) -> list[str]:
        """The keys of the payloads stored now (for tests and inspection)."""

        def listing() -> list[str]:
            return [str(k.id()) for k in ndb.Query(kind=self.kind).fetch(keys_only=True)]

        return ndb_context(self.client, outside_transaction(listing))

    def __repr__(self) -> str:
        return f"NdbPayloadStore(kind={self.kind!r})"


def _delete_quietly(keys: Sequence[ndb.Key]) -> None:
    """Deletes what a failed :meth:`NdbPayloadStore.put` may have written; best effort, never raises."""
    try:
        for batch in _batches(keys, 500):
            ndb.delete_multi(batch, use_cache=False)
    except Exception:
        logger.warning("Deleting the entities of a payload whose write failed failed too.", exc_info=True)


def utc_now() -> dt.datetime:
    """The time now as ndb stores it: a naive datetime in UTC."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _batches(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
