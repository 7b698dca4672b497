"""Task headers: the ones queues send, in both families, and a case-insensitive view."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from im_task._instances import instance_of

__all__ = [
    "APPENGINE",
    "CLOUDTASKS",
    "QUEUE_PROOF_HEADER",
    "Headers",
    "TaskHeaders",
    "delivery_headers",
    "forwardable_headers",
    "queue_headers",
    "is_hop_by_hop_header",
    "is_reserved_header",
    "make_task_headers",
]

#: Prefix of the headers Cloud Tasks sends to App Engine targets.
APPENGINE = "X-AppEngine-"
#: Prefix of the headers Cloud Tasks sends to HTTP targets.
CLOUDTASKS = "X-CloudTasks-"
FAMILIES = (APPENGINE, CLOUDTASKS)
#: Headers only the queue sets; a task's own headers may not name them.
RESERVED_PREFIXES = ("x-appengine-", "x-cloudtasks-", "x-google-")
#: The signed proof im-task's own queues put on each delivery (see :mod:`im_task.deliveryproof`).
QUEUE_PROOF_HEADER = "X-Im-Task-Queue-Proof"
RESERVED_NAMES = frozenset({"host", QUEUE_PROOF_HEADER.lower()})
#: Headers of the connection rather than the request (hop-by-hop, and the framing), set by whoever makes it.
HOP_BY_HOP_NAMES = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "content-length", "host"}
)
#: Prefixes of connection headers: ``Proxy-Authorization``, ``Proxy-Connection``...
HOP_BY_HOP_PREFIXES = ("proxy-",)


def _key(name: str) -> str:
    """A header name as WSGI servers match it: lower case, ``_`` read as ``-`` (both become ``_`` in ``HTTP_*``)."""
    return name.lower().replace("_", "-")


def is_reserved_header(name: str) -> bool:
    """Whether a header is the queue's to set: ``X-*`` of App Engine, Cloud Tasks, Google, ``Host``, the queue proof.

    The reserved prefixes are ``X-AppEngine-``, ``X-CloudTasks-`` and ``X-Google-``; the proof is
    :data:`QUEUE_PROOF_HEADER`.

    Underscores count as dashes, as WSGI servers merge ``X_AppEngine_...`` with ``X-AppEngine-...``.
    """
    key = _key(name)
    return key.startswith(RESERVED_PREFIXES) or key in RESERVED_NAMES


def is_hop_by_hop_header(name: str) -> bool:
    """Whether a header belongs to the connection rather than the request (a task may not set it).

    They are ``Connection``, ``Keep-Alive``, ``Proxy-*``, ``TE``, ``Trailer``,
    ``Transfer-Encoding``, ``Upgrade``, and the framing, ``Content-Length`` and ``Host``.
    Whoever makes a request sets these for it; a task's own headers may not
    name them, or they would be sent next to the queue's own framing.
    Underscores count as dashes, as in :func:`is_reserved_header`.
    """
    key = _key(name)
    return key in HOP_BY_HOP_NAMES or key.startswith(HOP_BY_HOP_PREFIXES)


def forwardable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The task's own headers a queue passes on: all but those it sets itself.

    Dropped: the reserved headers (see :func:`is_reserved_header`), so a task
    cannot forge or shadow the queue's, and connection headers
    (``Content-Length``, ``Connection``...), which the delivery sets.

    Args:
        headers: The task's own headers.

    Returns:
        The headers to send, in their order.
    """
    return {
        name: value for name, value in headers.items() if not (is_reserved_header(name) or is_hop_by_hop_header(name))
    }


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive mapping of HTTP headers.

    ``headers["x-appengine-taskretrycount"]`` and
    ``headers["X-AppEngine-TaskRetryCount"]`` are the same entry. Iteration
    yields the names as they were given.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, tuple[str, str]] = {k.lower(): (k, v) for k, v in pairs}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of header ``key`` in any case, or ``default``."""
        item = self._items.get(key.lower()) if isinstance(key, str) else None
        return default if item is None else item[1]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"

    def _picked(self, names: Iterable[tuple[str, str]], more: Mapping[str, str] | None = None) -> Headers:
        """The headers among ``names`` that are present, named as ``names`` gives them, then ``more``.

        The endpoint builds what a task sees with it, without a lower-casing pass over names it knows.

        Args:
            names: ``(lower-case name, name to give)`` pairs, in the order to keep.
            more: Headers to add after those (a later name wins, in any case).

        Returns:
            The new headers.
        """
        items = self._items
        chosen = {key: (name, item[1]) for key, name in names if (item := items.get(key)) is not None}
        if more:
            chosen.update({name.lower(): (name, value) for name, value in more.items()})
        return Headers._from_entries(chosen)

    @classmethod
    def _from_entries(cls, entries: dict[str, tuple[str, str]]) -> Headers:
        """Headers from entries already keyed by their lower-case names, without a lowering pass.

        Args:
            entries: ``{lower-case name: (name as given, value)}``; the headers keep this dictionary
                as their own, so pass one no one else changes.

        Returns:
            The headers.
        """
        made = cls.__new__(cls)
        made._items = entries
        return made


def queue_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The queue's task headers among ``headers`` (``X-AppEngine-*``, ``X-CloudTasks-*``), as they were given.

    Args:
        headers: Request headers (a :class:`Headers` is read without a case conversion per header).

    Returns:
        Those headers, by their names as given.
    """
    if isinstance(headers, Headers):
        return {name: value for key, (name, value) in headers._items.items() if key.startswith(_QUEUE_PREFIXES)}
    return {name: value for name, value in headers.items() if name.lower().startswith(_QUEUE_PREFIXES)}


_QUEUE_PREFIXES = ("x-appengine-", "x-cloudtasks-")


@dataclass(frozen=True)
class TaskHeaders:
    """What a queue told the endpoint about the task it delivers.

    Attributes:
        queue_name: Short queue name (a full ``projects/.../queues/q`` path is shortened).
        task_name: Short task name.
        retry_count: Attempts before this one, including ones that never reached the app; -1 when the header
            is not a whole number (the endpoint refuses such a request).
        execution_count: Earlier attempts that got a response other than 5xx; -1 when malformed, as above.
        eta: When the task was scheduled to run, or None.
        family: ``X-AppEngine-`` or ``X-CloudTasks-``.
    """

    queue_name: str
    task_name: str
    retry_count: int = 0
    execution_count: int = 0
    eta: dt.datetime | None = None
    family: str = APPENGINE

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> TaskHeaders | None:
        """Reads the task headers of either family.

        Args:
            headers: The request headers, in any case.

        Returns:
            The task headers, or None when the queue and task name headers are
            not both there (the request did not come from a queue).
        """
        view = headers if isinstance(headers, Headers) else Headers(headers)
        items = view._items
        for family, (queue_key, name_key, retry_key, execution_key, eta_key) in _FAMILY_KEYS:
            queue = items.get(queue_key)
            name = items.get(name_key)
            if queue and name and queue[1] and name[1]:
                retry, execution, eta = items.get(retry_key), items.get(execution_key), items.get(eta_key)
                fields = {
                    "queue_name": queue[1].rsplit("/", 1)[-1],
                    "task_name": name[1].rsplit("/", 1)[-1],
                    "retry_count": _int(None if retry is None else retry[1]),
                    "execution_count": _int(None if execution is None else execution[1]),
                    "eta": None if eta is None else _eta(eta[1]),
                    "family": family,
                }
                return instance_of(cls, fields)  # every request parses one
        return None


_PARSED_NAMES = ("QueueName", "TaskName", "TaskRetryCount", "TaskExecutionCount", "TaskETA")
#: The lower-case names of each family's task headers, as :meth:`TaskHeaders.parse` looks them up.
_FAMILY_KEYS = tuple((family, tuple(f"{family}{name}".lower() for name in _PARSED_NAMES)) for family in FAMILIES)


def make_task_headers(
    *,
    queue_name: str,
    task_name: str,
    retry_count: int = 0,
    execution_count: int = 0,
    eta: dt.datetime | None = None,
    family: str = APPENGINE,
    previous_response: int | None = None,
    retry_reason: str | None = None,
) -> dict[str, str]:
    """Builds the headers a queue sends with a task, as Cloud Tasks does.

    Args:
        queue_name: Short queue name.
        task_name: Short task name.
        retry_count: Attempts made before this one.
        execution_count: Earlier attempts that got a response other than 5xx.
        eta: When the task was due; the header carries seconds since the epoch.
        family: ``APPENGINE`` or ``CLOUDTASKS``.
        previous_response: HTTP status of the previous attempt, if any.
        retry_reason: Why the previous attempt failed, if it did.

    Returns:
        The headers, ready to send.
    """
    headers = {
        family + "QueueName": queue_name,
        family + "TaskName": task_name,
        family + "TaskRetryCount": str(retry_count),
        family + "TaskExecutionCount": str(execution_count),
    }
    if eta is not None:
        headers[family + "TaskETA"] = f"{eta.timestamp():.6f}"
    if previous_response is not None:
        headers[family + "TaskPreviousResponse"] = str(previous_response)
    if retry_reason:
        headers[family + "TaskRetryReason"] = retry_reason
    return headers


def delivery_headers(own: Mapping[str, str], queue: Mapping[str, str]) -> dict[str, str]:
    """The headers of one delivery attempt, as Cloud Tasks sends them: the task's own, then the queue's.

    Every queue of im-task that POSTs a task itself (the local queue, the
    in-process transports) builds its headers here. The task's own headers
    lose what the queue sets (see :func:`forwardable_headers`); a missing
    ``Content-Type`` is ``application/octet-stream``.

    Args:
        own: The task's own headers.
        queue: The queue's headers for this attempt, from :func:`make_task_headers`.

    Returns:
        The headers to send.
    """
    headers = forwardable_headers(own)
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/octet-stream"
    headers.update(queue)
    return headers


def _int(value: str | None) -> int:
    """A count header: 0 when absent, -1 when it is not a whole number of at most 9 digits (refused)."""
    if value is None or value == "":
        return 0
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else -1


def _eta(value: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(float(value), dt.timezone.utc) if value else None
    except (ValueError, OverflowError, OSError):
        return None
