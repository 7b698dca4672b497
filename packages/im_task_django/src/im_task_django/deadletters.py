"""``DjangoDeadLetterStore``: a Django project's dead letters, in its own database (``DeadLetterRecord``).

A Django project keeps its dead letters here unless
``IM_TASK["DEAD_LETTER_STORE"]`` (or ``$IM_TASK_DEAD_LETTER_STORE``) names
another store, so that the admin shows them and can replay them, and
``manage.py im_task_dead`` lists, shows, replays and purges them. A letter
is written in a transaction of its own on the default database (or
``using``), or in the request's with ``ATOMIC_REQUESTS``, which commits: the
endpoint answers a dead task 200.

Example:
    >>> IM_TASK = {"DEAD_LETTER_STORE": "im_task_django.deadletters:DjangoDeadLetterStore"}  # the default
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from django.db import DEFAULT_DB_ALIAS, transaction

from im_task.deadletter import DeadLetter, check_letter, check_queue_filter
from im_task_django.conf import DJANGO_DEAD_LETTER_STORE
from im_task_django.models import DeadLetterRecord

__all__ = ["DJANGO_STORE", "DjangoDeadLetterStore", "as_letter"]

#: The ``dead_letter_store`` setting that names this store (the default of a Django project).
DJANGO_STORE = DJANGO_DEAD_LETTER_STORE


def as_letter(record: DeadLetterRecord) -> DeadLetter:
    """The :class:`~im_task.deadletter.DeadLetter` a row holds.

    Args:
        record: The row.

    Returns:
        The dead letter.
    """
    recorded = record.recorded_at
    if recorded.tzinfo is None:  # USE_TZ = False: the database holds naive UTC... or local time; say UTC
        recorded = recorded.replace(tzinfo=dt.timezone.utc)
    return DeadLetter(
        name=record.name,
        queue=record.queue,
        url=record.url,
        body=bytes(record.body),
        outcome=record.outcome,
        attempts=record.attempts,
        error=record.error,
        headers={str(k): str(v) for k, v in (record.headers or {}).items()},
        recorded_at=recorded,
    )


class DjangoDeadLetterStore:
    """A dead-letter store in the project's database, through the ``DeadLetterRecord`` model.

    Args:
        using: The database alias (``"default"`` by default).

    Raises:
        ValueError: ``using`` is not a non-empty string.
    """

    name = "django"

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        if not isinstance(using, str) or not using:
            raise ValueError(f"using must be a database alias, not {using!r}.")
        self.using = using

    def record(self, letter: DeadLetter) -> None:
        """Keeps a dead letter; a second letter of the same queue and name replaces the first.

        Raises:
            TypeError: ``letter`` is not a ``DeadLetter``.
        """
        check_letter(letter)
        with transaction.atomic(using=self.using):
            DeadLetterRecord.objects.using(self.using).update_or_create(
                queue=letter.queue,
                name=letter.name,
                defaults={
                    "url": letter.url,
                    "body": letter.body,
                    "outcome": letter.outcome,
                    "attempts": letter.attempts,
                    "error": letter.error,
                    "headers": dict(letter.headers),
                    "recorded_at": letter.recorded_at,
                },
            )

    def get(self, queue: str, name: str) -> DeadLetter | None:
        """The dead letter of that task, or None."""
        record = DeadLetterRecord.objects.using(self.using).filter(queue=queue, name=name).first()
        return None if record is None else as_letter(record)

    def list(self, queue: str | None = None, *, limit: int | None = None) -> Iterator[DeadLetter]:
        """Dead letters, newest first, of one queue or of all.

        Raises:
            ValueError: For a bad ``queue`` or ``limit``.
        """
        check_queue_filter(queue, limit)
        rows = DeadLetterRecord.objects.using(self.using).order_by("-recorded_at", "name")
        if queue is not None:
            rows = rows.filter(queue=queue)
        if limit is not None:
            rows = rows[:limit]
        return iter([as_letter(record) for record in rows])

    def delete(self, queue: str, name: str) -> bool:
        """Forgets one dead letter; whether there was one."""
        deleted, _ = DeadLetterRecord.objects.using(self.using).filter(queue=queue, name=name).delete()
        return bool(deleted > 0)

    def purge(self, queue: str | None = None) -> int:
        """Forgets every dead letter of one queue or of all; how many there were.

        Raises:
            ValueError: For a bad ``queue``.
        """
        check_queue_filter(queue, None)
        rows = DeadLetterRecord.objects.using(self.using).all()
        if queue is not None:
            rows = rows.filter(queue=queue)
        deleted, _ = rows.delete()
        return int(deleted)

    def __repr__(self) -> str:
        return f"DjangoDeadLetterStore(using={self.using!r})"
