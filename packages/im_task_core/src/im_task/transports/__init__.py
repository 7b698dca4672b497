"""Queue backends: the :class:`Transport` contract and its implementations.

* :class:`LocalTransport`: the embedded default, a durable SQLite queue that
  delivers like Cloud Tasks.
* :class:`ImmediateTransport`: runs each task at once through the whole path.
* :class:`RecordingTransport`: records tasks for assertions.

Each is imported when first named, so an application whose transport is
another one never loads the local queue (nor sqlite3 and http.client).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from im_task.transports.base import TaskRequest, Transport

if TYPE_CHECKING:
    from im_task.transports.immediate import ImmediateTransport
    from im_task.transports.inprocess import InProcessTransport
    from im_task.transports.local import LocalTransport
    from im_task.transports.recording import RecordingTransport

__all__ = [
    "ImmediateTransport",
    "InProcessTransport",
    "LocalTransport",
    "RecordingTransport",
    "TaskRequest",
    "Transport",
]

_LAZY = {
    "ImmediateTransport": "im_task.transports.immediate",
    "InProcessTransport": "im_task.transports.inprocess",
    "LocalTransport": "im_task.transports.local",
    "RecordingTransport": "im_task.transports.recording",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
