"""Payload stores: where a task too large to travel inline keeps its serialised call.

A task over its transport's inline limit (100 KB for App Engine targets and
the local queue, 1 MB for HTTP targets) is written to the payload store in
force, and the task carries a signed :class:`~im_task.envelope.PayloadReference`
to it (store, key, SHA-256, size). The endpoint loads the payload, checks its
hash, runs it, and deletes it after success or a permanent failure.

* :class:`PayloadStore`: the protocol (``put``, ``get``, ``delete``, ``sweep``).
* :class:`LocalPayloadStore`: a SQLite file next to the local queue; the default off Google Cloud.
* :class:`NdbPayloadStore`: Datastore through google-cloud-ndb (``im-task[gcp]``); the default on App Engine
  and Cloud Run.

The names are imported when first used, so that ``import im_task.stores``
loads neither sqlite3 nor google-cloud-ndb.

Example:
    >>> from im_task import configure
    >>> from im_task.stores import LocalPayloadStore
    >>> configure(payload_store=LocalPayloadStore("/tmp/payloads.sqlite3"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from im_task.lazy import lazy_names

if TYPE_CHECKING:
    from im_task.stores.base import (
        DEFAULT_ORPHAN_TTL,
        PayloadStore,
        get_payload_store,
        load_payload,
        make_payload_store,
        store_payload,
    )
    from im_task.stores.local import LocalPayloadStore
    from im_task.stores.ndb import NdbPayloadStore

__all__ = [
    "DEFAULT_ORPHAN_TTL",
    "LocalPayloadStore",
    "NdbPayloadStore",
    "PayloadStore",
    "get_payload_store",
    "load_payload",
    "make_payload_store",
    "store_payload",
]

_LAZY = {
    "DEFAULT_ORPHAN_TTL": "im_task.stores.base",
    "PayloadStore": "im_task.stores.base",
    "get_payload_store": "im_task.stores.base",
    "load_payload": "im_task.stores.base",
    "make_payload_store": "im_task.stores.base",
    "store_payload": "im_task.stores.base",
    "LocalPayloadStore": "im_task.stores.local",
    "NdbPayloadStore": "im_task.stores.ndb",
}

__getattr__, __dir__ = lazy_names(globals(), _LAZY)
