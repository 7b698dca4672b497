"""The transaction binder that makes ``transactional=True`` follow Django's ``transaction.atomic()``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import connections

from im_task import outbox  # noqa: F401 - loaded with the binder: the endpoint then marks delivered outbox rows
from im_task.errors import ConfigurationError
from im_task.transports.base import TaskRequest, Transport
from im_task_django.conf import get_app_settings

if TYPE_CHECKING:
    from im_task_django.outbox import DjangoOutboxStorage

__all__ = ["DjangoTransactionBinder", "binder"]


class DjangoTransactionBinder:
    """Joins ``transactional=True`` tasks to ``transaction.atomic()`` on one database.

    Inside ``atomic`` on that database the task is written to the outbox in
    the same transaction and sent after commit (see :mod:`im_task_django.outbox`);
    a rollback leaves no task. Outside, :func:`im_task.transactions.enqueue_transactional`
    finds no transaction and raises ``BadTransactionStateError``.

    Args:
        using: Database alias; ``IM_TASK["DATABASE"]`` (``"default"``) when None,
            read at each call so that setting changes apply.
    """

    def __init__(self, using: str | None = None) -> None:
        self._using = using
        self._description: str | None = None

    @property
    def using(self) -> str:
        """The database alias whose transactions tasks join."""
        return self._using or get_app_settings().database

    @property
    def description(self) -> str:
        """What this binder joins, for errors: the alias, how to change it, and any other open transaction.

        Assign a text to replace it.
        """
        if self._description is not None:
            return self._description
        alias = self.using
        setting = "DjangoTransactionBinder(using=...)" if self._using else "IM_TASK['DATABASE']"
        text = f"Django's transaction.atomic(using={alias!r}), on the outbox's database, chosen by {setting}"
        others = [other.alias for other in connections.all(initialized_only=True) if other.in_atomic_block]
        others = [other for other in others if other != alias]
        if others:
            text += (
                f"; a transaction is open on {', '.join(map(repr, others))} instead: to join it, set {setting} "
                "to that alias and migrate im_task_django there"
            )
        return text

    @description.setter
    def description(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise ConfigurationError(f"description must be a non-empty string, not {text!r}.")
        self._description = text

    @property
    def outbox_storage(self) -> DjangoOutboxStorage:
        """The outbox of the database, where the task endpoint marks the rows of the tasks it receives."""
        from im_task_django.outbox import DjangoOutboxStorage  # needs the models, so the apps, ready

        return DjangoOutboxStorage(self.using)

    def in_transaction(self) -> bool:
        """Whether this thread is inside ``transaction.atomic()`` on the database."""
        alias = self.using
        return alias in connections and connections[alias].in_atomic_block

    def enqueue_on_commit(self, request: TaskRequest, transport: Transport) -> str:
        """Writes the task to the outbox now and sends it after commit; see :class:`TransactionBinder`."""
        from im_task_django.outbox import enqueue_on_commit  # needs the models, so the apps, ready

        return enqueue_on_commit(request, transport, using=self.using)


#: The binder the app registers when it is ready.
binder = DjangoTransactionBinder()
