"""The payload store protocol, and the store in force: made from the ``payload_store`` setting.

:mod:`im_task.config` keeps the setting as given (a store, or a name) and
imports no store; :func:`get_payload_store` makes the store a name stands for.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

from im_task import config
from im_task.envelope import PayloadReference
from im_task.errors import ConfigurationError, Error
from im_task.stores.making import StoreSetting

__all__ = [
    "BUILTIN_STORES",
    "NO_STORE",
    "DEFAULT_ORPHAN_TTL",
    "PAYLOAD_FILE",
    "PayloadStore",
    "PayloadUnavailableError",
    "get_payload_store",
    "load_payload",
    "make_payload_store",
    "store_payload",
]

logger = logging.getLogger("im_task")

#: The built-in store names and the class each stands for.
BUILTIN_STORES = {
    "local": "im_task.stores.local:LocalPayloadStore",
    "ndb": "im_task.stores.ndb:NdbPayloadStore",
}
#: The file of the local payload store, in ``data_dir`` next to the local queue.
PAYLOAD_FILE = "payloads.sqlite3"
#: Age after which :meth:`PayloadStore.sweep` may delete a payload no task has claimed (31 days: Cloud Tasks
#: schedules at most 30 days ahead).
DEFAULT_ORPHAN_TTL = 31 * 24 * 3600.0
_FORMS = "a PayloadStore, 'local', 'ndb', 'none', or 'package.module:factory'"
#: The setting that turns payload stores off: tasks over the inline limit are refused (``TaskTooLargeError``).
NO_STORE = "none"


class PayloadUnavailableError(Error):
    """A stored payload is missing or is not the one its signed reference names (altered): never unpickled."""


@runtime_checkable
class PayloadStore(Protocol):
    """Where payloads too large to travel inline are kept until their task is done.

    Implementations must be safe to use from several threads.

    Attributes:
        name: The store's kind, written in every reference (``"local"``, ``"ndb"``); the endpoint
            refuses a reference to another kind of store than the one in force.
    """

    name: str

    def put(self, payload: bytes, *, in_transaction: bool = True) -> str:
        """Stores a payload, inside the caller's open transaction when asked to and the store has one.

        With ``in_transaction`` (a ``transactional=True`` task, sent after
        commit) a rollback of that transaction must leave nothing stored.
        Without it (a task sent at once) the payload must be stored for good
        before this returns, outside any open transaction: the queue may run
        the task before that transaction commits.

        Args:
            payload: The serialised call.
            in_transaction: Whether to join the caller's open transaction.

        Returns:
            The new key (a fresh, unguessable string).
        """

    def get(self, key: str) -> bytes | None:
        """The payload stored under ``key``, or None when there is none."""

    def delete(self, key: str) -> None:
        """Deletes a payload; a key already gone is not an error."""

    def sweep(self, older_than: float = DEFAULT_ORPHAN_TTL) -> int:
        """Deletes payloads stored at least ``older_than`` seconds ago (orphans of tasks that never ran).

        Args:
            older_than: Seconds; longer than a task can wait and be retried.

        Returns:
            How many payloads were deleted.
        """


def _is_store(value: object) -> bool:
    return not isinstance(value, type) and all(callable(getattr(value, m, None)) for m in ("put", "get", "delete"))


_SETTING: StoreSetting[PayloadStore] = StoreSetting(
    setting="payload_store",
    kind="payload store",
    expected="PayloadStore",
    forms=_FORMS,
    builtins=BUILTIN_STORES,
    file=PAYLOAD_FILE,
    accept=_is_store,
)


def make_payload_store(setting: object = None, *, data_dir: Path | None = None) -> PayloadStore:
    """The store a ``payload_store`` setting stands for.

    Args:
        setting: A store (returned as it is); ``"local"``, ``"ndb"`` or ``"package.module:factory"``;
            or None for the default: ``"ndb"`` on App Engine and Cloud Run, ``"local"`` elsewhere.
        data_dir: Where ``"local"`` keeps its file (:data:`PAYLOAD_FILE`); the settings' ``data_dir`` when None.

    Returns:
        The store.

    Raises:
        ConfigurationError: The setting has none of those forms, cannot be imported, or its factory failed.
    """
    given = _SETTING.given(setting)
    if given is not None:
        return given
    name = str(setting or ("ndb" if config.on_google_cloud() else "local"))
    if name == NO_STORE:
        raise ConfigurationError(
            "payload_store is 'none': no payload store is in force, so a task that refers to a stored payload "
            "cannot run here; configure the payload_store of the process that enqueued it."
        )
    return _SETTING.make(name, data_dir)


def get_payload_store() -> PayloadStore:
    """The payload store in force, from the ``payload_store`` setting (made once per setting and data directory).

    Raises:
        ConfigurationError: The setting cannot be made into a store.
    """
    settings = config.get_settings()
    setting = settings.payload_store
    if setting is not None and not isinstance(setting, str):
        return make_payload_store(setting)
    key = (setting, settings.data_dir, config.on_google_cloud())
    return _SETTING.in_force(key, lambda data_dir: make_payload_store(setting, data_dir=data_dir))


def store_payload(
    payload: bytes, store: PayloadStore | None = None, *, in_transaction: bool = True
) -> PayloadReference:
    """Stores a payload and returns the reference a task carries to it.

    Args:
        payload: The serialised call.
        store: Where; the store in force when None.
        in_transaction: Whether to join the caller's open transaction (only
            for a task sent after that transaction commits).

    Returns:
        The reference: the store's name, the key, the payload's SHA-256 and size.
    """
    target = store or get_payload_store()
    key = target.put(payload, in_transaction=in_transaction)
    return PayloadReference.of(target.name, key, payload)


def load_payload(reference: PayloadReference, store: PayloadStore | None = None) -> bytes:
    """Loads the payload a verified reference names, and checks it is that payload.

    Args:
        reference: From a verified envelope.
        store: Where; the store in force when None.

    Returns:
        The payload, whose size and SHA-256 match the reference.

    Raises:
        PayloadUnavailableError: The store in force is of another kind, the payload is gone, or it was altered.
        ConfigurationError: The store cannot be made.
    """
    source = store or get_payload_store()
    if source.name != reference.store:
        raise PayloadUnavailableError(
            f"the payload is in a {reference.store!r} payload store but this process uses {source.name!r}; "
            "configure the same payload_store in every process that enqueues or runs tasks"
        )
    payload = source.get(reference.key)
    if payload is None:
        raise PayloadUnavailableError(f"the stored payload {reference.key} is missing")
    if not reference.matches(payload):
        raise PayloadUnavailableError(
            f"the stored payload {reference.key} does not match its signed SHA-256 and size (altered); "
            "it was not unpickled"
        )
    return payload
