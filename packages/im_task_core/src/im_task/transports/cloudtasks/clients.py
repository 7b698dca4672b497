"""Cloud Tasks clients made lazily, once per process, and dropped in a forked child.

The clients of google-cloud-tasks are thread-safe but not fork-safe
(google-cloud-python#8272): a gRPC channel made before a fork hangs or fails
in the child (grpcio 1.78.1 was yanked over hangs of module-level clients
under pre-forking servers). So a :class:`PerProcess` holder makes its client
on first use in each process, reuses it across calls and threads, and forgets
it in a child, both from an ``os.register_at_fork`` handler and by checking
the process id (for forks that run no handler). What a child inherits is kept
referenced and never closed there: closing the parent's channel from the
child is what must not happen.
"""

from __future__ import annotations

import importlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from im_task.errors import ConfigurationError

__all__ = ["INSTALL_HINT", "MIN_VERSION", "PerProcess", "require_library"]

T = TypeVar("T")

#: The oldest google-cloud-tasks with ``batch_create_tasks`` and per-task ``retry_config``.
MIN_VERSION = (2, 25)
INSTALL_HINT = "pip install 'im-task[gcp]'"

_live: weakref.WeakSet[PerProcess[Any]] = weakref.WeakSet()
#: What forked children inherited from their parent: kept alive so that no destructor closes it in the child.
_inherited: list[Any] = []


def require_library() -> Any:
    """Imports ``google.cloud.tasks_v2``, checking its version.

    Returns:
        The ``google.cloud.tasks_v2`` module.

    Raises:
        ConfigurationError: It is missing or older than 2.25, with the command that installs it.
    """
    try:
        tasks_v2 = importlib.import_module("google.cloud.tasks_v2")
    except ImportError as exc:
        raise ConfigurationError(
            f"The Cloud Tasks transport needs google-cloud-tasks 2.25 or later: {INSTALL_HINT}. ({exc})"
        ) from exc
    version = str(getattr(tasks_v2, "__version__", "0"))
    parts = tuple(int(p) if p.isdigit() else 0 for p in version.split(".")[:2])
    if parts < MIN_VERSION:
        raise ConfigurationError(
            f"The Cloud Tasks transport needs google-cloud-tasks 2.25 or later (for batch creation and per-task "
            f"retry_config), not {version}: {INSTALL_HINT}."
        )
    return tasks_v2


class PerProcess(Generic[T]):
    """One object per process, made on first use by ``make`` and dropped in a forked child. Thread-safe.

    Args:
        make: Makes the object; called at most once per process (again after :meth:`clear`).
        close: Releases an object this process made, on :meth:`clear`; None to just drop it.
    """

    def __init__(self, make: Callable[[], T], close: Callable[[T], None] | None = None) -> None:
        self._make = make
        self._close = close
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._value: T | None = None
        _live.add(self)

    def get(self) -> T:
        """The object of this process, made now if this process has none."""
        value = self._value
        if value is not None and self._pid == os.getpid():
            return value
        with self._lock:
            if self._pid != os.getpid():
                self.forget_inherited()
            if self._value is None:
                self._value = self._make()
            return self._value

    def peek(self) -> T | None:
        """The object of this process, or None when it has not been made (nothing is made)."""
        return self._value if self._pid == os.getpid() else None

    def forget_inherited(self) -> None:
        """In a forked child: forgets the parent's object without closing it, and the parent's lock."""
        if self._value is not None:
            _inherited.append(self._value)
        self._value = None
        self._lock = threading.Lock()  # another thread of the parent may have held it at the fork
        self._pid = os.getpid()

    def clear(self) -> None:
        """Closes (with ``close``) and forgets this process's object; the next :meth:`get` makes a new one."""
        with self._lock:
            if self._pid != os.getpid():
                self.forget_inherited()
                return
            value, self._value = self._value, None
        if value is not None and self._close is not None:
            self._close(value)


def _after_fork_in_child() -> None:
    for holder in list(_live):
        holder.forget_inherited()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python 3.7+
    os.register_at_fork(after_in_child=_after_fork_in_child)
