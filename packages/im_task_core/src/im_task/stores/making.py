"""A store setting made into the store in force: a store given as it is, or a name made into one, once.

``payload_store`` and ``dead_letter_store`` take the same forms: a store
instance, a built-in name (``"local"``, a SQLite file in the data directory;
``"ndb"``, Datastore), or ``"package.module:factory"``. A
:class:`StoreSetting` describes one such setting; :mod:`im_task.stores.base`
and :mod:`im_task.stores.deadletters` decide the name and the cache key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from im_task import config
from im_task.errors import ConfigurationError
from im_task.loading import load_named, make_named

__all__ = ["StoreSetting"]

S = TypeVar("S")


@dataclass(frozen=True)
class StoreSetting(Generic[S]):
    """One store setting: what it accepts, the built-in stores its names stand for, the stores made from it.

    Attributes:
        setting: The setting's name (``"payload_store"``), in messages.
        kind: What it makes (``"payload store"``), in messages.
        expected: The protocol a store keeps (``"PayloadStore"``), in messages.
        forms: The forms the setting takes, in messages.
        builtins: The built-in names and the ``module:Class`` each stands for.
        file: The file of ``"local"``, in the data directory.
        accept: Whether a value is a store (an instance keeping the protocol).
    """

    setting: str
    kind: str
    expected: str
    forms: str
    builtins: Mapping[str, str]
    file: str
    accept: Callable[[object], bool]
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    _made: dict[tuple[Any, ...], S] = field(default_factory=dict, init=False, repr=False, compare=False)

    def given(self, value: object) -> S | None:
        """The store ``value`` is; None when it is a name or None (to be made).

        Raises:
            ConfigurationError: ``value`` is neither a store, a name nor None.
        """
        if value is None or isinstance(value, str):
            return None
        if self.accept(value):
            store: S = value  # type: ignore[assignment]
            return store
        raise ConfigurationError(f"{self.setting} must be {self.forms}; got {type(value).__name__}.")

    def make(self, name: str, data_dir: Path | None = None, **kwargs: Any) -> S:
        """The store a name stands for, made now.

        Args:
            name: A built-in name or ``"package.module:factory"``.
            data_dir: Where ``"local"`` keeps its :attr:`file`; the settings' data directory when None.
            **kwargs: Keyword arguments of the store's class or factory.

        Raises:
            ConfigurationError: The name cannot be imported, or its factory failed or made no store.
        """
        hint = " (install im-task[gcp] for 'ndb')" if name == "ndb" else ""
        factory = load_named(name, self.builtins, kind=self.kind, forms=self.forms, hint=hint)
        args = (Path(data_dir or config.get_settings().local_data_dir()) / self.file,) if name == "local" else ()
        made: S = make_named(factory, name, *args, kind=self.kind, expected=self.expected, accept=self.accept, **kwargs)
        return made

    def in_force(self, key: tuple[Any, ...], make: Callable[[Path | None], S]) -> S:
        """The store ``make(data_dir)`` returns, made once per ``key``.

        ``data_dir`` is the settings' data directory when it was configured,
        else None: the store then asks ``local_data_dir()``, where the pytest
        plugin's guard refuses the working directory's default, as it does for the local queue.

        Args:
            key: What the store depends on (the setting, the data directory...).
            make: Makes the store from the data directory.

        Raises:
            ConfigurationError: What ``make`` raised (nothing is kept then).
        """
        settings = config.get_settings()
        with self._lock:
            if key not in self._made:
                self._made[key] = make(settings.data_dir if settings.data_dir_configured else None)
            return self._made[key]
