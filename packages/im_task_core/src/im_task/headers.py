"""Task headers: the ones queues send, in both families, and a case-insensitive view."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "APPENGINE",
    "CLOUDTASKS",
    "Headers",
    "TaskHeaders",
    "delivery_headers",
    "forwardable_headers",
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
RESERVED_NAMES = frozenset({"host"})
#: Headers of the connection, set by whoever makes the request.
_HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive", "upgrade"})


def _key(name: str) -> str:
    """A header name as WSGI servers match it: lower case, ``_`` read as ``-`` (both become ``_`` in ``HTTP_*``)."""
    return name.lower().replace("_", "-")


def is_reserved_header(name: str) -> bool:
    """Whether a header is the queue's to set: ``X-AppEngine-*``, ``X-CloudTasks-*``, ``X-Google-*``, ``Host``.

    Underscores count as dashes, as WSGI servers merge ``X_AppEngine_...`` with ``X-AppEngine-...``.
    """
    key = _key(name)
    return key.startswith(RESERVED_PREFIXES) or key in RESERVED_NAMES


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
        name: value for name, value in headers.items() if not is_reserved_header(name) and _key(name) not in _HOP_BY_HOP
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

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass(frozen=True)
class TaskHeaders:
    """What a queue told the endpoint about the task it delivers.

    Attributes:
        queue_name: Short queue name (a full ``projects/.../queues/q`` path is shortened).
        task_name: Short task name.
        retry_count: Attempts before this one, including ones that never reached the app.
        execution_count: Earlier attempts that got a response other than 5xx.
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
        for family in FAMILIES:
            queue = view.get(family + "QueueName")
            name = view.get(family + "TaskName")
            if queue and name:
                return cls(
                    queue_name=queue.rsplit("/", 1)[-1],
                    task_name=name.rsplit("/", 1)[-1],
                    retry_count=_int(view.get(family + "TaskRetryCount")),
                    execution_count=_int(view.get(family + "TaskExecutionCount")),
                    eta=_eta(view.get(family + "TaskETA")),
                    family=family,
                )
        return None


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
    try:
        return max(int(value or 0), 0)
    except ValueError:
        return 0


def _eta(value: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(float(value), dt.timezone.utc) if value else None
    except (ValueError, OverflowError, OSError):
        return None
