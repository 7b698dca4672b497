"""Task options: one frozen, validated value per decorated function or call site."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from im_task.errors import ConfigurationError
from im_task.headers import is_hop_by_hop_header, is_reserved_header
from im_task.names import QUEUE_NAME, QUEUE_NAME_RULE, TASK_NAME, TASK_NAME_RULE
from im_task.retry import RetryOptions

__all__ = ["MAX_SCHEDULE_AHEAD", "OPTION_NAMES", "TaskOptions"]

#: Cloud Tasks schedules at most this far ahead.
MAX_SCHEDULE_AHEAD = dt.timedelta(days=30)
MIN_DISPATCH_DEADLINE = dt.timedelta(seconds=15)
MAX_DISPATCH_DEADLINE = dt.timedelta(minutes=30)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token


@dataclass(frozen=True)
class TaskOptions:
    """How a task is enqueued. Every field is validated when the value is made.

    Attributes:
        queue: Queue name, or several to spread load over (one is picked at
            random per call); None for the configured default queue.
        countdown: Seconds to wait before running.
        eta: When to run (an aware datetime; a naive one is taken as UTC).
        name: Task name, unique per queue while the queue remembers it.
        target: Service or version to route the task to.
        retry_options: The task's own retry options.
        headers: Extra headers to send with the task.
        url: Endpoint path, instead of ``<taskroute>/<module>/<function>``.
        dispatch_deadline: How long the queue waits for an answer (15 s to 30 min).
        transactional: Enqueue only when the surrounding transaction commits.
        includeheaders: Pass the request headers to the function as ``headers=``.
        logname: Readable name used in the task URL instead of ``<module>/<function>``.
        raise_if_exists: False to treat "a task of this name exists" as done, not as an error
            (FreshPlanet's choice): the call returns the handle and logs it at info.
        parent: im_task's (Python 2) ``parent``, a datastore key its large payloads were stored under;
            accepted so old code runs, and given to nothing (see the migration guide).
    """

    queue: str | tuple[str, ...] | None = None
    countdown: float | None = None
    eta: dt.datetime | None = None
    name: str | None = None
    target: str | None = None
    retry_options: RetryOptions | None = None
    headers: Mapping[str, str] | None = None
    url: str | None = None
    dispatch_deadline: dt.timedelta | None = None
    transactional: bool = False
    includeheaders: bool = False
    logname: str | None = None
    raise_if_exists: bool = True
    parent: Any = None

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any], *, base: TaskOptions | None = None) -> TaskOptions:
        """Builds validated options from keyword arguments.

        Args:
            options: Option names and values, as given to ``@task``.
            base: Options to start from; a ``countdown`` given here clears the
                base's ``eta`` and the other way round (``None`` clears only itself).

        Returns:
            The options.

        Raises:
            ConfigurationError: For an unknown option or a bad value.
        """
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise ConfigurationError(
                f"Unknown task option(s) {', '.join(map(repr, unknown))}; the options are: {', '.join(OPTION_NAMES)}."
            )
        values = {name: _CHECKS[name](value) for name, value in options.items()}
        if base is not None:
            if values.get("countdown") is not None and "eta" not in values:
                values["eta"] = None
            if values.get("eta") is not None and "countdown" not in values:
                values["countdown"] = None
            return replace(base, **values)
        return cls(**values)

    def __post_init__(self) -> None:
        if self.countdown is not None and self.eta is not None:
            raise ConfigurationError("Give either countdown or eta, not both.")
        if self.eta is not None and self.eta - dt.datetime.now(dt.timezone.utc) > MAX_SCHEDULE_AHEAD:
            raise ConfigurationError(f"eta {self.eta.isoformat()} is more than 30 days ahead; Cloud Tasks refuses it.")
        if self.transactional and self.name is not None:
            raise ConfigurationError(
                "A transactional task cannot have a name (as on App Engine); drop name= or transactional=."
            )

    def pick_queue(self, default: str, choice: Any) -> str:
        """The queue for one call: the single queue, a random one of several, or the default."""
        if self.queue is None:
            return default
        if isinstance(self.queue, str):
            return self.queue
        return str(choice(self.queue))

    def schedule_time(self, now: dt.datetime) -> dt.datetime | None:
        """When a call made at ``now`` is due, or None for at once."""
        if self.eta is not None:
            return self.eta
        if self.countdown:
            return now + dt.timedelta(seconds=self.countdown)
        return None


def _queue(value: Any) -> str | tuple[str, ...] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, Sequence) or isinstance(names, (bytes, bytearray)) or not names:
        raise ConfigurationError(f"queue must be a queue name or a non-empty list of names, not {value!r}.")
    for name in names:
        if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
            raise ConfigurationError(f"Queue name {name!r} is invalid: use {QUEUE_NAME_RULE}.")
    return value if isinstance(value, str) else tuple(names)


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        raise ConfigurationError(f"{name} must be a number of seconds or a timedelta, not {value!r}.")
    return float(value)


def _countdown(value: Any) -> float | None:
    if value is None:
        return None
    seconds = _seconds("countdown", value)
    if seconds < 0:
        raise ConfigurationError(f"countdown must be >= 0 seconds, not {seconds}.")
    if seconds > MAX_SCHEDULE_AHEAD.total_seconds():
        raise ConfigurationError(f"countdown {seconds} s is more than 30 days; Cloud Tasks refuses it.")
    return seconds


def _eta(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise ConfigurationError(f"eta must be a datetime, not {type(value).__name__}.")
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not TASK_NAME.fullmatch(value):
        raise ConfigurationError(
            f"Task name {value!r} is invalid: use {TASK_NAME_RULE} "
            "(a hashed prefix spreads load better than a timestamp)."
        )
    return value


def _text(option: str) -> Any:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"{option} must be a non-empty string, not {value!r}.")
        return value

    return check


def _url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or any(c.isspace() for c in value):
        raise ConfigurationError(f"url must be a path starting with '/' and without spaces, not {value!r}.")
    return value


def _headers(value: Any) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"headers must be a dict of str to str, not {type(value).__name__}.")
    checked: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str) or not key:
            raise ConfigurationError(f"headers must map str to str; {key!r}: {item!r} is not.")
        if not HEADER_NAME.fullmatch(key):
            raise ConfigurationError(f"Header name {key!r} is not valid: use letters, digits and '-'.")
        if is_reserved_header(key):
            raise ConfigurationError(
                f"Header {key!r} cannot be set on a task: X-AppEngine-*, X-CloudTasks-*, X-Google-*, "
                "X-Im-Task-Queue-Proof and Host are set by the queue."
            )
        if is_hop_by_hop_header(key):
            raise ConfigurationError(
                f"Header {key!r} cannot be set on a task: Connection, Keep-Alive, Proxy-*, TE, Trailer, "
                "Transfer-Encoding, Upgrade and Content-Length belong to the connection, which the queue makes for "
                "each delivery. Remove it from headers=."
            )
        if any(c in item for c in "\r\n"):
            raise ConfigurationError(f"Header {key!r} has a line break in its value.")
        checked[key] = item
    return checked


def _dispatch_deadline(value: Any) -> dt.timedelta | None:
    if value is None:
        return None
    deadline = dt.timedelta(seconds=_seconds("dispatch_deadline", value))
    if not MIN_DISPATCH_DEADLINE <= deadline <= MAX_DISPATCH_DEADLINE:
        raise ConfigurationError(
            f"dispatch_deadline must be between 15 seconds and 30 minutes, not {deadline.total_seconds()} s."
        )
    return deadline


def _flag(option: str) -> Any:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigurationError(f"{option} must be True or False, not {value!r}.")
        return value

    return check


def _parent(value: Any) -> Any:
    """A datastore key (anything with ``kind()`` and ``id()``, as ``ndb.Key`` has) or None."""
    if value is None or (callable(getattr(value, "kind", None)) and callable(getattr(value, "id", None))):
        return value
    raise ConfigurationError(
        f"parent must be a datastore key (e.g. an ndb.Key) or None, not {type(value).__name__}; im-task gives it "
        "to nothing, so you may also drop it."
    )


_CHECKS: dict[str, Any] = {
    "queue": _queue,
    "countdown": _countdown,
    "eta": _eta,
    "name": _name,
    "target": _text("target"),
    "retry_options": RetryOptions.coerce,
    "headers": _headers,
    "url": _url,
    "dispatch_deadline": _dispatch_deadline,
    "transactional": _flag("transactional"),
    "includeheaders": _flag("includeheaders"),
    "logname": _text("logname"),
    "raise_if_exists": _flag("raise_if_exists"),
    "parent": _parent,
}
OPTION_NAMES = tuple(f.name for f in fields(TaskOptions))
assert set(OPTION_NAMES) == set(_CHECKS)
