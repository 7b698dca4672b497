"""The dead-letter store in force: made from the ``dead_letter_store`` setting.

Like ``payload_store``, the setting is a store or a name: ``"local"`` (a
SQLite file, :data:`DEAD_LETTER_FILE`, in the data directory),
``"ndb"`` (Datastore), ``"package.module:factory"``, or ``"none"`` (no dead
letters are kept). Unset, it follows the payload store: ``"ndb"`` when the
payload store is Datastore (the default on App Engine and Cloud Run),
``"local"`` otherwise.

Example:
    >>> from im_task.stores.deadletters import get_dead_letter_store
    >>> get_dead_letter_store()  # doctest: +SKIP
    LocalDeadLetterStore('.im_task/deadletters.sqlite3')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from im_task import config
from im_task.deadletter import DeadLetterStore
from im_task.stores.making import StoreSetting

__all__ = [
    "BUILTIN_DEAD_LETTER_STORES",
    "DEAD_LETTER_FILE",
    "NO_DEAD_LETTERS",
    "dead_letter_store_name",
    "is_dead_letter_store",
    "get_dead_letter_store",
    "make_dead_letter_store",
]

#: The built-in store names and the class each stands for.
BUILTIN_DEAD_LETTER_STORES = {
    "local": "im_task.stores.deadletters_local:LocalDeadLetterStore",
    "ndb": "im_task.stores.deadletters_ndb:NdbDeadLetterStore",
}
#: The file of the local dead-letter store, in ``data_dir`` next to the local queue and the payloads.
DEAD_LETTER_FILE = "deadletters.sqlite3"
#: The setting that keeps no dead letters.
NO_DEAD_LETTERS = "none"
_FORMS = "a DeadLetterStore, 'local', 'ndb', 'none', or 'package.module:factory'"
_METHODS = ("record", "get", "list", "delete", "purge")


def is_dead_letter_store(value: object) -> bool:
    """Whether ``value`` keeps the :class:`~im_task.deadletter.DeadLetterStore` protocol (an instance, not a class)."""
    return not isinstance(value, type) and all(callable(getattr(value, m, None)) for m in _METHODS)


_SETTING: StoreSetting[DeadLetterStore] = StoreSetting(
    setting="dead_letter_store",
    kind="dead-letter store",
    expected="DeadLetterStore",
    forms=_FORMS,
    builtins=BUILTIN_DEAD_LETTER_STORES,
    file=DEAD_LETTER_FILE,
    accept=is_dead_letter_store,
)


def dead_letter_store_name(settings: config.Settings) -> str | None:
    """The name the settings ask for (their ``dead_letter_store``, or the payload store's kind), or None for a store.

    Args:
        settings: The settings in force.

    Returns:
        ``"local"``, ``"ndb"``, ``"none"`` or ``"package.module:factory"``; None when the setting is a store instance.
    """
    setting = settings.dead_letter_store
    if setting is not None:
        return setting if isinstance(setting, str) else None
    payloads = settings.payload_store
    kind = payloads if isinstance(payloads, str) else getattr(payloads, "name", None)
    if kind in ("local", "ndb"):
        return str(kind)
    return "ndb" if config.on_google_cloud() else "local"


def make_dead_letter_store(setting: object = None, *, data_dir: Path | None = None) -> DeadLetterStore | None:
    """The store a ``dead_letter_store`` setting stands for.

    Args:
        setting: A store (returned as it is); ``"local"``, ``"ndb"``, ``"none"`` or ``"package.module:factory"``;
            or None for ``"local"``.
        data_dir: Where ``"local"`` keeps its file (:data:`DEAD_LETTER_FILE`); the settings' data directory when None.

    Returns:
        The store, or None for ``"none"``.

    Raises:
        ConfigurationError: The setting has none of those forms, cannot be imported, or its factory failed.
    """
    given = _SETTING.given(setting)
    if given is not None:
        return given
    name = str(setting or "local")
    if name == NO_DEAD_LETTERS:
        return None
    return _make_named(name, data_dir)


def get_dead_letter_store() -> DeadLetterStore | None:
    """The dead-letter store in force, or None when ``dead_letter_store`` is ``"none"`` (made once per setting).

    Raises:
        ConfigurationError: The setting cannot be made into a store.
    """
    settings = config.get_settings()
    setting = settings.dead_letter_store
    if setting is not None and not isinstance(setting, str):
        return make_dead_letter_store(setting)
    name = dead_letter_store_name(settings)
    if name is None or name == NO_DEAD_LETTERS:
        return None
    key = (name, settings.data_dir, settings.data_dir_configured, id(settings.payload_store))
    return _SETTING.in_force(key, lambda data_dir: _make_named(name, data_dir))


def _make_named(name: str, data_dir: Path | None) -> DeadLetterStore:
    """The store a name stands for; ``"ndb"`` is given the payload store's client, when it was given one."""
    kwargs: dict[str, Any] = {}
    if name == "ndb":
        client = getattr(config.get_settings().payload_store, "client", None)
        if client is not None:
            kwargs["client"] = client
    return _SETTING.make(name, data_dir, **kwargs)
