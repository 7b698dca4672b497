"""The settings' names, their defaults, and what value each one accepts.

:func:`validate_setting` checks one value from any source (``configure()``,
a framework's settings, an environment variable) and returns it in the form
:class:`~im_task.config.Settings` keeps: a secret as a tuple of key bytes, a
path as ``Path``, a number of seconds as ``float``. A transport and the stores
are kept as given, an object or a name: this module imports none of them.
:mod:`im_task.config` resolves the settings from their sources;
:mod:`im_task.adapter_settings` checks a framework's settings here too.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from im_task.errors import ConfigurationError
from im_task.keys import MAKE_SECRET, coerce_secret
from im_task.names import QUEUE_NAME, QUEUE_NAME_RULE

__all__ = [
    "DEFAULT_ENVELOPE_LIFETIME",
    "DEFAULT_MAX_BODY_SIZE",
    "SETTING_NAMES",
    "validate_setting",
]

logger = logging.getLogger("im_task")

#: The largest task request body the endpoint reads by default, in bytes.
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
#: How long after its schedule time an envelope is accepted by default: Cloud Tasks keeps a task at most
#: 31 days (and schedules at most 30 days ahead, so no envelope lives more than 61 days).
DEFAULT_ENVELOPE_LIFETIME = 31 * 24 * 3600.0
#: Every setting, by its ``configure()`` name, in the order the documentation lists them.
SETTING_NAMES = (
    "transport",
    "secret",
    "data_dir",
    "max_body_size",
    "warmup_module",
    "default_queue",
    "environment",
    "project",
    "location",
    "base_url",
    "service_account_email",
    "audience",
    "background_service",
    "front_authenticated",
    "accept_legacy_payloads",
    "payload_store",
    "dead_letter_store",
    "log_outcomes",
    "envelope_lifetime",
    "accept_unbound_envelopes",
)


def _is_transport(value: Any) -> bool:
    """A ``Transport`` or anything that keeps its contract (this module imports no transport)."""
    return callable(getattr(value, "enqueue", None)) and not isinstance(value, type)


def validate_setting(name: str, value: Any, source: str) -> Any:
    """Checks one setting's value and returns it in the form the settings keep.

    Args:
        name: The setting, one of :data:`SETTING_NAMES`.
        value: Its value (not None).
        source: Where it came from, for the message.

    Returns:
        The value, converted (a secret to a tuple of bytes, a path to ``Path``...).

    Raises:
        ConfigurationError: Saying what a good value looks like.
    """
    if name == "transport":
        if isinstance(value, str) or _is_transport(value):
            return value
        raise ConfigurationError(
            f"{source}: transport must be a Transport instance or one of 'local', 'immediate', "
            f"'recording', 'cloudtasks', 'package.module:factory'; got {type(value).__name__}."
        )
    if name == "secret":
        return _secrets(value, source)
    if name == "data_dir":
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise ConfigurationError(f"{source}: data_dir must be a path, not {type(value).__name__}.")
    if name == "max_body_size":
        try:
            size = int(value)
        except (TypeError, ValueError):
            size = 0
        if isinstance(value, bool) or size < 1024:
            raise ConfigurationError(f"{source}: max_body_size must be a whole number of bytes >= 1024, not {value!r}.")
        return size
    if name == "warmup_module":
        if isinstance(value, str) and value:
            return value
        raise ConfigurationError(f"{source}: warmup_module must be a non-empty string, not {value!r}.")
    if name == "default_queue":
        if isinstance(value, str) and QUEUE_NAME.fullmatch(value):
            return value
        raise ConfigurationError(f"{source}: default_queue must be a queue name of {QUEUE_NAME_RULE}, not {value!r}.")
    if name == "environment":
        if value in ("development", "production"):
            return value
        raise ConfigurationError(f"{source}: environment must be 'development' or 'production', not {value!r}.")
    if name in ("project", "location", "background_service"):
        if isinstance(value, str) and _GCP_ID.fullmatch(value):
            return value
        raise ConfigurationError(
            f"{source}: {name} must be a Google Cloud id such as 'my-project' or 'europe-west1', not {value!r}."
        )
    if name == "base_url":
        return _absolute_url(value, source, name)
    if name == "audience":
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise ConfigurationError(
            f"{source}: audience must be a non-empty string (usually the app's URL), not {value!r}."
        )
    if name == "service_account_email":
        if isinstance(value, str) and _EMAIL.fullmatch(value):
            return value
        raise ConfigurationError(
            f"{source}: service_account_email must be an email such as "
            f"'tasks@my-project.iam.gserviceaccount.com', not {value!r}."
        )
    if name in ("front_authenticated", "accept_legacy_payloads", "accept_unbound_envelopes"):
        return _boolean(value, source, name)
    if name == "envelope_lifetime":
        return _envelope_lifetime(value, source)
    if name == "payload_store":
        return _payload_store(value, source)
    if name == "dead_letter_store":
        return _dead_letter_store(value, source)
    if name == "log_outcomes":
        return _boolean(value, source, name)
    raise AssertionError(name)  # pragma: no cover - SETTING_NAMES and this function agree


_GCP_ID = re.compile(r"(?:[a-z0-9.-]+:)?(?:[a-z][a-z0-9-]{0,61}[a-z0-9]|[a-z])")  # "example.com:proj" is a legacy id
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


_STORE_NAME = re.compile(r"local|ndb|none|[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def _secrets(value: Any, source: str) -> tuple[bytes, ...]:
    """The secret setting as key bytes: one or a list; an environment variable's value split at commas."""
    items: Sequence[Any]
    if isinstance(value, str) and source.startswith("$"):
        items = [part.strip() for part in value.split(",") if part.strip()]
        if not items:
            raise ConfigurationError(
                f"{source} holds no secret, only commas and spaces: set it to a secret (several are "
                f"separated by commas, the first signing), or unset it. Make one with: {MAKE_SECRET}"
            )
        if len(items) > 1:
            logger.warning(
                "%s holds %d secrets separated by commas: the first signs new tasks, all %d verify (key "
                "rotation). A secret cannot contain a comma; if that was one secret, make a new one with: %s",
                source,
                len(items),
                len(items),
                MAKE_SECRET,
            )
    elif isinstance(value, (str, bytes)):
        items = [value]
    elif isinstance(value, Sequence) and value:
        items = value
    else:
        raise ConfigurationError(f"{source}: secret must be a str, bytes, or a non-empty list of them.")
    return tuple(coerce_secret(item, source=source) for item in items)


def _payload_store(value: Any, source: str) -> Any:
    """A payload store, or the name of one (kept as a name: this module imports no store)."""
    if isinstance(value, str) and _STORE_NAME.fullmatch(value):
        return value
    if not isinstance(value, (str, type)) and all(callable(getattr(value, m, None)) for m in ("put", "get", "delete")):
        return value
    raise ConfigurationError(
        f"{source}: payload_store must be a PayloadStore instance (with put, get and delete) or one of 'local', "
        f"'ndb', 'none' (refuse tasks over the inline limit), 'package.module:factory'; got {value!r}."
    )


def _dead_letter_store(value: Any, source: str) -> Any:
    """A dead-letter store, or the name of one (kept as a name: this module imports no store)."""
    if isinstance(value, str) and _STORE_NAME.fullmatch(value):
        return value
    methods = ("record", "get", "list", "delete", "purge")
    if not isinstance(value, (str, type)) and all(callable(getattr(value, m, None)) for m in methods):
        return value
    raise ConfigurationError(
        f"{source}: dead_letter_store must be a DeadLetterStore instance (with {', '.join(methods)}) or one of "
        f"'local', 'ndb', 'none' (keep no dead letters), 'package.module:factory'; got {value!r}."
    )


def _absolute_url(value: Any, source: str, name: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{source}: {name} must be an absolute http(s) URL such as 'https://app.example.com', without "
            f"query or fragment, not {value!r}."
        )
    return str(value).rstrip("/")


def _envelope_lifetime(value: Any, source: str) -> float:
    """Seconds (a number, a numeric string or a ``timedelta``), from one minute to the 31-day default."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    else:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = -1.0
        if isinstance(value, bool):
            seconds = -1.0
    if not 60 <= seconds <= DEFAULT_ENVELOPE_LIFETIME:
        raise ConfigurationError(
            f"{source}: envelope_lifetime must be a number of seconds (or a timedelta) from 60 to "
            f"{DEFAULT_ENVELOPE_LIFETIME:.0f} (31 days, the default), not {value!r}. It is how long after its "
            "schedule time a task may still run: keep it longer than the queue retries a task."
        )
    return seconds


def _boolean(value: Any, source: str, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    raise ConfigurationError(f"{source}: {name} must be True or False (or 'true'/'false'), not {value!r}.")
