"""The one process-wide state of im-task, with a snapshot and a restore for tests.

Everything im-task keeps for the life of a process lives in :data:`STATE`:
the settings given by ``configure()`` and by an adapter, what was resolved
from them (settings, keyring, transport), the task route, the transaction
binders, the local queue's in-process target, the warm-up modules
imported and Google's certificates for the OIDC check. The modules that own
each concept (``config``, ``routing``, ``transactions``, ``executor``,
``runtime``, ``caller``) read and write it under its lock; nothing else holds
process state.

Example:
    >>> from im_task.state import STATE
    >>> saved = STATE.snapshot()
    >>> STATE.taskroute = "/tasks"
    >>> STATE.restore(saved)
    >>> STATE.taskroute
    '/_ah/task'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["DEFAULT_TASKROUTE", "STATE", "Closable", "Snapshot", "State"]

logger = logging.getLogger("im_task")

#: The route tasks are served under unless ``set_taskroute()`` changes it.
DEFAULT_TASKROUTE = "/_ah/task"


class Closable(Protocol):
    """What the state needs of a transport: a way to release it."""

    def close(self) -> None:
        """Releases the transport's resources."""


@dataclass(frozen=True)
class Snapshot:
    """A copy of the process-wide state, for :meth:`State.restore`.

    Attributes:
        values: The state's fields, by name.
    """

    values: dict[str, Any] = field(repr=False)


class State:
    """The process-wide state; :data:`STATE` is the one instance.

    Attributes:
        lock: Guards every field; re-entrant.
        explicit: Settings given to ``configure()``, validated, by name.
        framework: Settings an adapter read from its framework, validated, by name.
        settings: The settings resolved from every source, or None until asked for.
        keyring: The keyring made from the settings, or None until asked for.
        transport: The transport in force, or None until it is made.
        owns_transport: Whether the transport was made here (from a name), so is closed here.
        transport_made_with: The settings the transport was made with (``Settings.transport_shape()``).
        taskroute: The route tasks are served under.
        binders: The transaction binders ``transactional=True`` joins.
        local_target: The WSGI application the local queue delivers to in process, if any.
        warmed_up: Warm-up modules imported by the endpoint.
        warned: The keys of the warnings logged once per process (see :meth:`first_warning`).
        guard: When set, the reason the default data directory of the working
            directory may not be used (the pytest plugin sets it: tests use fixtures).
        oidc_certs_url: Where Google's certificates are fetched from, when not Google's own
            URL (tests serve theirs); set by :mod:`im_task.caller`.
        oidc_certs: Google's certificates as last fetched, with their expiry, or None; kept by :mod:`im_task.caller`.
        header_log_level: The level at which the endpoint logs a task's queue headers
            (``im_task.deferred.set_level``); DEBUG by default.
        resolver: Resolves the settings from every source; set by :mod:`im_task.config`.
        keyring_resolver: Makes the keyring of the settings in force; set by :mod:`im_task.config`.
        endpoint_handler: The handler of this process's endpoints, which in-process
            transports made without a handler deliver to; set by :mod:`im_task.endpoints`.
        delivery_hook: Called by the endpoint with the task name of every delivery whose signature
            verified, before the task runs; set by :mod:`im_task.outbox` (``record_delivery``).
    """

    _FIELDS = (
        "explicit",
        "framework",
        "settings",
        "keyring",
        "transport",
        "owns_transport",
        "transport_made_with",
        "taskroute",
        "binders",
        "local_target",
        "warmed_up",
        "warned",
        "guard",
        "oidc_certs_url",
        "oidc_certs",
        "header_log_level",
    )

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.explicit: dict[str, Any] = {}
        self.framework: dict[str, Any] = {}
        self.settings: Any = None
        self.keyring: Any = None
        self.transport: Any = None
        self.owns_transport = False
        self.transport_made_with: tuple[Any, ...] | None = None
        self.taskroute = DEFAULT_TASKROUTE
        self.binders: list[Any] = []
        self.local_target: Callable[..., Any] | None = None
        self.warmed_up: set[str] = set()
        self.warned: set[str] = set()
        self.guard: str | None = None
        self.oidc_certs_url: str | None = None
        self.oidc_certs: Any = None
        self.header_log_level = logging.DEBUG
        self.resolver: Callable[[], Any] | None = None
        self.keyring_resolver: Callable[[], Any] | None = None
        self.endpoint_handler: Callable[..., Any] | None = None
        self.delivery_hook: Callable[[str], object] | None = None

    def snapshot(self) -> Snapshot:
        """A copy of every field, to give to :meth:`restore` later."""
        with self.lock:
            values = {}
            for name in self._FIELDS:
                value = getattr(self, name)
                values[name] = value.copy() if isinstance(value, (dict, list, set)) else value
            return Snapshot(values)

    def restore(self, snapshot: Snapshot) -> None:
        """Puts back the state of a snapshot.

        A transport made here since the snapshot (from a setting, so owned
        here) is closed, after the lock is released: closing waits for
        deliveries in flight, which may read the state.

        Args:
            snapshot: What :meth:`snapshot` returned.
        """
        with self.lock:
            current, owned = self.transport, self.owns_transport
            # Readers take settings and keyring without the lock (see _Moment.current): the keyring goes
            # first, so that one that sees the restored settings sees the restored keyring or None, never
            # the previous one (None sends them to the lock).
            self.keyring = None
            values = dict(snapshot.values)
            keyring = values.pop("keyring", None)
            for name, value in values.items():
                setattr(self, name, value.copy() if isinstance(value, (dict, list, set)) else value)
            self.keyring = keyring
        if owned and current is not None and current is not self.transport:
            close_quietly(current)

    def clear(self) -> None:
        """Forgets everything but :attr:`guard`, as in a new process; nothing is closed.

        Used with :meth:`snapshot` and :meth:`restore`, which closes what was made meanwhile.
        """
        fresh = State()
        with self.lock:
            for name in self._FIELDS:
                if name != "guard":
                    setattr(self, name, getattr(fresh, name))

    def first_warning(self, key: str) -> bool:
        """Whether the once-per-process warning ``key`` is due now: True the first time, then False."""
        with self.lock:
            if key in self.warned:
                return False
            self.warned.add(key)
            return True

    def settings_in_force(self) -> Any:
        """The resolved settings (see :func:`im_task.config.get_settings`)."""
        if self.resolver is None:  # pragma: no cover - im_task.config sets it when im_task is imported
            raise RuntimeError("im_task.config is not loaded")
        return self.resolver()

    def keyring_in_force(self) -> Any:
        """The keyring of the settings in force (see :func:`im_task.config.get_keyring`).

        The queues that share the data directory sign their deliveries with it (:mod:`im_task.deliveryproof`).
        """
        if self.keyring_resolver is None:  # pragma: no cover - im_task.config sets it when im_task is imported
            raise RuntimeError("im_task.config is not loaded")
        return self.keyring_resolver()


def close_quietly(transport: Closable) -> None:
    """Closes a transport that is no longer in force, logging instead of raising."""
    try:
        transport.close()
    except Exception:
        logger.warning("Closing the transport %r failed.", transport, exc_info=True)


#: The process-wide state.
STATE = State()
