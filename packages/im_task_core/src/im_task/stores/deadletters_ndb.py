"""``NdbDeadLetterStore``: dead letters in Datastore through google-cloud-ndb, next to the payload store's kinds.

One entity per dead letter (kind ``_ImTaskDeadLetter`` by default, key name
``<queue>/<name>``), its body split across child entities of kind
``<kind>Chunk`` when the letter would pass Datastore's 1 MiB entity limit
(a task body may be 1 MB on Cloud Tasks). Listing one queue needs only
Datastore's built-in single-property indexes: no ``index.yaml`` entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.cloud import ndb  # type: ignore[attr-defined]

from im_task.deadletter import DeadLetter, check_letter, check_queue_filter
from im_task.errors import ConfigurationError
from im_task.stores.ndb import (
    CHUNK_SIZE,
    check_kind,
    chunk_model,
    kind_model,
    models_of_kind,
    ndb_context,
    outside_transaction,
)

__all__ = ["DEFAULT_KIND", "NdbDeadLetterStore"]

#: The kind of the dead letters, in the family of the payload store's ``_ImTaskPayload``.
DEFAULT_KIND = "_ImTaskDeadLetter"
#: Bytes of body kept in the letter's own entity; the rest goes to chunks (room is left for the error text).
_HEAD_BODY = 600_000
#: Most characters of the last error kept (a traceback of a deep recursion can be megabytes).
_MAX_ERROR = 200_000
T = TypeVar("T")


def _letter_models(kind: str) -> tuple[type[ndb.Model], type[ndb.Model]]:
    """The letter and chunk model classes of a kind (made once per kind)."""

    def make(kind: str, number: int) -> tuple[type[ndb.Model], type[ndb.Model]]:
        letter = kind_model(
            kind,
            f"DeadLetterEntity_{number}",
            queue=ndb.StringProperty(),
            name=ndb.TextProperty(),
            url=ndb.TextProperty(),
            body=ndb.BlobProperty(),
            chunks=ndb.IntegerProperty(indexed=False),
            outcome=ndb.TextProperty(),
            attempts=ndb.IntegerProperty(indexed=False),
            error=ndb.TextProperty(),
            headers=ndb.JsonProperty(),
            recorded_at=ndb.DateTimeProperty(),
        )
        return letter, chunk_model(kind, f"DeadLetterChunk_{number}")

    return models_of_kind("dead letter", kind, make)


class NdbDeadLetterStore:
    """A dead-letter store in Datastore, through google-cloud-ndb (``pip install 'im-task[gcp]'``).

    The default on App Engine and Cloud Run, where Cloud Tasks keeps no task
    that failed permanently or gave up. Uses the ndb context open in the
    calling thread, or opens one of ``client`` when there is none; it never
    joins the caller's transaction.

    Args:
        client: The ``ndb.Client`` of the contexts the store opens; one made from the environment when None.
        kind: The kind of the letters; body chunks are ``<kind>Chunk``, children of their letter.

    Raises:
        ConfigurationError: For a bad kind or client.

    Example:
        >>> from im_task import configure
        >>> configure(dead_letter_store=NdbDeadLetterStore(kind="_ImTaskDeadLetter"))  # doctest: +SKIP
    """

    name = "ndb"

    def __init__(self, client: ndb.Client | None = None, *, kind: str = DEFAULT_KIND) -> None:
        if client is not None and not isinstance(client, ndb.Client):
            raise ConfigurationError(f"client must be a google.cloud.ndb.Client or None, not {type(client).__name__}.")
        self.client = client
        self.kind = check_kind(kind)
        self._letter, self._chunk = _letter_models(self.kind)

    def _run(self, func: Callable[[], T]) -> T:
        return ndb_context(self.client, outside_transaction(func))

    def _key(self, queue: str, name: str) -> ndb.Key:
        return ndb.Key(self.kind, f"{queue}/{name}")

    def record(self, letter: DeadLetter) -> None:
        """Keeps a dead letter; a second letter of the same queue and name replaces the first.

        Raises:
            TypeError: ``letter`` is not a :class:`~im_task.deadletter.DeadLetter`.
        """
        check_letter(letter)
        body = letter.body
        pieces = [body[:_HEAD_BODY]] + [body[i : i + CHUNK_SIZE] for i in range(_HEAD_BODY, len(body), CHUNK_SIZE)]

        def write() -> None:
            key = self._key(letter.queue, letter.name)
            _delete_chunks(self.kind, key)  # a replaced letter's chunks
            chunks = [
                self._chunk(key=ndb.Key(self.kind + "Chunk", index, parent=key), data=piece)
                for index, piece in enumerate(pieces[1:], start=1)
            ]
            for chunk in chunks:  # one at a time: each is up to 1 MB
                chunk.put(use_cache=False)
            self._letter(
                key=key,
                queue=letter.queue,
                name=letter.name,
                url=letter.url,
                body=pieces[0],
                chunks=len(pieces),
                outcome=letter.outcome,
                attempts=letter.attempts,
                error=letter.error[-_MAX_ERROR:],
                headers=dict(letter.headers),
                recorded_at=letter.recorded_at.astimezone(dt.timezone.utc).replace(tzinfo=None),
            ).put(use_cache=False)

        self._run(write)

    def get(self, queue: str, name: str) -> DeadLetter | None:
        """The dead letter of that task, or None (also when a chunk of its body is missing)."""

        def read() -> DeadLetter | None:
            return self._load(self._key(queue, name).get(use_cache=False))

        result: DeadLetter | None = self._run(read)
        return result

    def _load(self, entity: Any) -> DeadLetter | None:
        if entity is None:
            return None
        parts = [entity.body or b""]
        for index in range(1, entity.chunks or 1):
            chunk: Any = ndb.Key(self.kind + "Chunk", index, parent=entity.key).get(use_cache=False)
            if chunk is None:
                return None
            parts.append(chunk.data or b"")
        return DeadLetter(
            name=entity.name,
            queue=entity.queue,
            url=entity.url,
            body=b"".join(parts),
            outcome=entity.outcome,
            attempts=entity.attempts or 0,
            error=entity.error or "",
            headers=dict(entity.headers or {}),
            recorded_at=entity.recorded_at.replace(tzinfo=dt.timezone.utc),
        )

    def list(self, queue: str | None = None, *, limit: int | None = None) -> Iterator[DeadLetter]:
        """Dead letters, newest first, of one queue or of all.

        Raises:
            ValueError: For a bad ``queue`` or ``limit``.
        """
        check_queue_filter(queue, limit)

        def listing() -> list[DeadLetter]:
            model: Any = self._letter
            if queue is None:
                entities = list(model.query().order(-model.recorded_at).fetch(limit))
            else:  # filtering and sorting here needs no composite index
                entities = sorted(model.query(model.queue == queue).fetch(), key=lambda e: e.recorded_at, reverse=True)[
                    :limit
                ]
            return [letter for letter in map(self._load, entities) if letter is not None]

        return iter(self._run(listing))

    def delete(self, queue: str, name: str) -> bool:
        """Forgets one dead letter (and its chunks); whether there was one."""

        def remove() -> bool:
            key = self._key(queue, name)
            found = key.get(use_cache=False) is not None
            _delete_chunks(self.kind, key)
            key.delete(use_cache=False)
            return found

        return bool(self._run(remove))

    def purge(self, queue: str | None = None) -> int:
        """Forgets every dead letter of one queue or of all; how many there were.

        Raises:
            ValueError: For a bad ``queue``.
        """
        check_queue_filter(queue, None)

        def remove() -> int:
            model: Any = self._letter
            query = model.query() if queue is None else model.query(model.queue == queue)
            keys = list(query.fetch(keys_only=True))
            for key in keys:
                _delete_chunks(self.kind, key)
            for start in range(0, len(keys), 500):
                ndb.delete_multi(keys[start : start + 500], use_cache=False)
            return len(keys)

        return int(self._run(remove))

    def __repr__(self) -> str:
        return f"NdbDeadLetterStore(kind={self.kind!r})"


def _delete_chunks(kind: str, key: ndb.Key) -> None:
    chunks = list(ndb.Query(kind=kind + "Chunk", ancestor=key).fetch(keys_only=True))
    if chunks:
        ndb.delete_multi(chunks, use_cache=False)
