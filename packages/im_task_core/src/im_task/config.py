"""Process-wide settings, resolved in one place.

Each setting comes from the first of: :func:`configure`, the web framework's
settings (pushed by an adapter), environment variables, defaults.

==================  ==========================  =======================================
setting             environment variable        default
==================  ==========================  =======================================
``transport``       ``IM_TASK_TRANSPORT``       ``LocalTransport`` (Cloud Tasks on App Engine)
``secret``          ``IM_TASK_SECRET``          made once in ``data_dir`` (development only)
``data_dir``        ``IM_TASK_DATA_DIR``        ``.im_task`` in the working directory
``max_body_size``   ``IM_TASK_MAX_BODY_SIZE``   1,048,576 bytes
``warmup_module``   ``IM_TASK_WARMUP_MODULE``   none
``default_queue``   ``IM_TASK_DEFAULT_QUEUE``   ``"default"``
``environment``     ``IM_TASK_ENV``             ``"production"`` on App Engine or Cloud Run, else ``"development"``
==================  ==========================  =======================================

``secret`` may be a list: the first signs, all verify; ``IM_TASK_SECRET``
takes several separated by commas. ``transport`` may be a ``Transport``, or a
name: ``"local"``, ``"immediate"``, ``"recording"``, or ``"package.module:factory"``.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from im_task.errors import ConfigurationError
from im_task.keys import Keyring, coerce_secret, load_or_create_local_secret
from im_task.options import QUEUE_NAME

if TYPE_CHECKING:
    from im_task.transports.base import Transport

__all__ = [
    "SETTING_NAMES",
    "Settings",
    "check_configuration",
    "configure",
    "get_keyring",
    "get_local_target",
    "get_settings",
    "get_transport",
    "register_local_target",
    "reset",
    "set_framework_settings",
    "set_up_framework",
]

Environment = Literal["development", "production"]
WSGIApp = Callable[..., Any]

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
ENV_PREFIX = "IM_TASK_"
SETTING_NAMES = (
    "transport",
    "secret",
    "data_dir",
    "max_body_size",
    "warmup_module",
    "default_queue",
    "environment",
)


@dataclass(frozen=True)
class Settings:
    """The resolved settings (see the module docstring for their sources).

    Attributes:
        transport: The transport given, a name of one, or None for the default.
        secrets: Configured signing secrets, first one signing; empty when none is set.
        data_dir: Where the local queue, the local secret and local payloads live.
        max_body_size: Largest task request body the endpoint reads, in bytes.
        warmup_module: Module imported before the first task runs, or None.
        default_queue: Queue of tasks that name none.
        environment: ``"production"`` refuses to run without a configured secret.
    """

    transport: Transport | str | None
    secrets: tuple[bytes, ...] = field(repr=False)  # never in logs
    data_dir: Path
    max_body_size: int
    warmup_module: str | None
    default_queue: str
    environment: Environment

    @property
    def production(self) -> bool:
        """Whether unsafe configuration must be refused."""
        return self.environment == "production"


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.explicit: dict[str, Any] = {}
        self.framework: dict[str, Any] = {}
        self.settings: Settings | None = None
        self.transport: Transport | None = None
        self.owns_transport = False  # made here from a name, so closed here
        self.transport_made_with: tuple[Any, Path] | None = None  # (transport setting, data_dir)
        self.keyring: Keyring | None = None
        self.local_target: WSGIApp | None = None


_state = _State()


def configure(**settings: Any) -> None:
    """Sets process-wide settings, changing only those given.

    Args:
        **settings: Any of ``transport``, ``secret``, ``data_dir``,
            ``max_body_size``, ``warmup_module``, ``default_queue``,
            ``environment``. ``None`` returns a setting to its next source.

    Raises:
        ConfigurationError: For an unknown setting or a bad value; nothing is
            changed then.

    Example:
        >>> from im_task import configure
        >>> from im_task.transports import ImmediateTransport
        >>> configure(transport=ImmediateTransport(), secret="a-long-enough-secret-value")
    """
    checked = _checked(settings, source="configure()")
    with _changing():
        for name in settings:
            if name in checked:
                _state.explicit[name] = checked[name]
            else:
                _state.explicit.pop(name, None)


def set_framework_settings(values: Mapping[str, Any], *, source: str) -> None:
    """Replaces the settings an adapter read from its framework's configuration.

    Args:
        values: Settings by their :func:`configure` names; ``None`` values are ignored.
        source: Where they came from (e.g. ``"settings.IM_TASK"``), for error messages.
    """
    checked = _checked(values, source=source)
    with _changing():
        _state.framework = checked


def _checked(values: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """Validates settings; returns those that are not None."""
    unknown = sorted(set(values) - set(SETTING_NAMES))
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(SETTING_NAMES)}."
        )
    return {name: _validate(name, value, source) for name, value in values.items() if value is not None}


@contextmanager
def _changing(*, drop_transport: bool = False) -> Iterator[None]:
    """Changes settings under the lock, then forgets what was resolved from the old ones.

    The transport is kept unless the settings that shape it (``transport``,
    ``data_dir``) changed. A transport made here from a name is closed after
    the lock is released: closing waits for deliveries in flight, and those
    may read the settings.
    """
    with _state.lock:
        yield
        stale = _invalidate(drop_transport=drop_transport)
    if stale is not None:
        stale.close()


def _invalidate(*, drop_transport: bool = False) -> Transport | None:
    _state.settings = None
    _state.keyring = None
    transport = _state.transport
    if transport is None:
        return None
    if not drop_transport:
        try:
            settings = get_settings()
            if (settings.transport, settings.data_dir) == _state.transport_made_with:
                return None
        except ConfigurationError:
            pass
    owned = _state.owns_transport
    _state.transport = None
    _state.owns_transport = False
    return transport if owned else None


def reset() -> None:
    """Forgets every setting, the transport and the registered local target (for tests)."""
    with _changing(drop_transport=True):
        _state.explicit.clear()
        _state.framework.clear()
        _state.local_target = None


def get_settings() -> Settings:
    """The settings in force, resolved from all sources."""
    with _state.lock:
        if _state.settings is None:
            _state.settings = _resolve()
        return _state.settings


def _resolve() -> Settings:
    def pick(name: str) -> Any:
        for layer in (_state.explicit, _state.framework):
            if name in layer:
                return layer[name]
        variable = ENV_PREFIX + ("ENV" if name == "environment" else name.upper())
        raw = os.environ.get(variable)
        return _validate(name, raw, f"${variable}") if raw else None

    secret = pick("secret")
    environment: Environment = pick("environment") or ("production" if on_google_cloud() else "development")
    return Settings(
        transport=pick("transport"),
        secrets=secret or (),
        data_dir=pick("data_dir") or Path(".im_task"),
        max_body_size=pick("max_body_size") or DEFAULT_MAX_BODY_SIZE,
        warmup_module=pick("warmup_module"),
        default_queue=pick("default_queue") or "default",
        environment=environment,
    )


def on_google_cloud() -> bool:
    """Whether this process runs on App Engine (standard or flexible) or Cloud Run: production, by default."""
    return os.environ.get("GAE_ENV") in ("standard", "flex") or bool(os.environ.get("K_SERVICE"))


def _validate(name: str, value: Any, source: str) -> Any:
    from im_task.transports.base import Transport  # the transports import this module

    if name == "transport":
        if isinstance(value, (Transport, str)):
            return value
        raise ConfigurationError(
            f"{source}: transport must be a Transport instance or one of 'local', 'immediate', "
            f"'recording', 'package.module:factory'; got {type(value).__name__}."
        )
    if name == "secret":
        items: Sequence[Any]
        if isinstance(value, str) and source.startswith("$"):
            items = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, (str, bytes)):
            items = [value]
        elif isinstance(value, Sequence) and value:
            items = value
        else:
            raise ConfigurationError(f"{source}: secret must be a str, bytes, or a non-empty list of them.")
        return tuple(coerce_secret(item, source=source) for item in items)
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
        raise ConfigurationError(
            f"{source}: default_queue must be a queue name of 1 to 100 of A-Z, a-z, 0-9 and '-', not {value!r}."
        )
    if name == "environment":
        if value in ("development", "production"):
            return value
        raise ConfigurationError(f"{source}: environment must be 'development' or 'production', not {value!r}.")
    raise AssertionError(name)  # pragma: no cover - SETTING_NAMES and this function agree


def get_keyring() -> Keyring:
    """The keyring that signs and verifies envelopes.

    Raises:
        ConfigurationError: In production when no secret is configured.
    """
    with _state.lock:
        if _state.keyring is None:
            settings = get_settings()
            if settings.secrets:
                _state.keyring = Keyring(settings.secrets)
            elif settings.production:
                raise ConfigurationError(
                    "No secret is configured and this is production: tasks cannot be signed safely. "
                    "Set IM_TASK_SECRET (or configure(secret=...), or your framework's IM_TASK secret setting) "
                    "to a random value of at least 16 bytes, the same in every process that enqueues or runs tasks."
                )
            else:
                _state.keyring = Keyring([load_or_create_local_secret(settings.data_dir)])
        return _state.keyring


def check_configuration() -> None:
    """Refuses unsafe or broken configuration; adapters call it at start-up.

    Raises:
        ConfigurationError: Explaining what to set.
    """
    get_keyring()
    get_transport()


def get_transport() -> Transport:
    """The transport in force, making the default one on first use."""
    from im_task.transports.base import Transport

    with _state.lock:
        if _state.transport is None:
            settings = get_settings()
            _state.transport = _make_transport(settings)
            _state.owns_transport = not isinstance(settings.transport, Transport)
            _state.transport_made_with = (settings.transport, settings.data_dir)
        return _state.transport


def _make_transport(settings: Settings) -> Transport:
    from im_task.transports.base import Transport

    choice = settings.transport
    if isinstance(choice, Transport):
        return choice
    if choice is None:
        if os.environ.get("GAE_ENV") == "standard":
            raise ConfigurationError(
                "On App Engine the default transport is Cloud Tasks, which this version of im-task does not "
                "include yet; configure(transport=...) with a Transport explicitly."
            )
        choice = "local"
    return _transport_from_name(choice, settings)


def _transport_from_name(name: str, settings: Settings) -> Transport:
    from im_task.transports import ImmediateTransport, LocalTransport, RecordingTransport, Transport

    builtins: dict[str, Callable[[], Transport]] = {
        "local": lambda: LocalTransport(settings.data_dir / "queue.sqlite3"),
        "immediate": ImmediateTransport,
        "recording": RecordingTransport,
    }
    if name in builtins:
        return builtins[name]()
    module_name, _, attr = name.partition(":")
    if not attr:
        raise ConfigurationError(
            f"transport {name!r} is not one of {', '.join(builtins)} nor of the form 'package.module:factory'."
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"transport {name!r} cannot be imported: {exc}") from exc
    try:
        transport = factory() if callable(factory) and not isinstance(factory, Transport) else factory
    except Exception as exc:
        raise ConfigurationError(f"transport factory {name!r} failed: {exc}") from exc
    if not isinstance(transport, Transport):
        raise ConfigurationError(f"transport {name!r} gave {type(transport).__name__}, not a Transport.")
    return transport


def set_up_framework(
    values: Mapping[str, Any],
    *,
    source: str,
    local_target: WSGIApp | None = None,
    route: str | None = None,
) -> None:
    """What an adapter does when an application is set up, in one step.

    Applies the framework's settings and task route, registers the
    application as the local queue's in-process target (before the transport
    is made, so the queue finds it), and refuses unsafe or broken
    configuration. On refusal everything is put back as it was.

    Args:
        values: Settings by their :func:`configure` names.
        source: Where they came from, for error messages.
        local_target: The WSGI application to register, or None to register none.
        route: The task route to set (see :func:`~im_task.set_taskroute`), or None to keep it.

    Raises:
        ConfigurationError: Explaining what to set.
    """
    from im_task import routing

    with _state.lock:
        framework, target, taskroute = dict(_state.framework), _state.local_target, routing.get_taskroute()
    try:
        set_framework_settings(values, source=source)
        if route is not None:
            routing.set_taskroute(route)
        if local_target is not None:
            register_local_target(local_target)
        check_configuration()
    except Exception:
        with _changing():
            _state.framework, _state.local_target = framework, target
        routing.set_taskroute(taskroute)
        raise


def register_local_target(app: WSGIApp | None) -> None:
    """Names the WSGI application the local queue delivers to in process.

    Adapters call this when they are set up, so the embedded queue needs no
    configuration. The last registration wins.

    Args:
        app: A WSGI callable, or None to forget the registered one.
    """
    if app is not None and not callable(app):
        raise ConfigurationError(f"The local target must be a WSGI callable, not {type(app).__name__}.")
    with _state.lock:
        _state.local_target = app


def get_local_target() -> WSGIApp | None:
    """The WSGI application an adapter registered for in-process delivery, if any."""
    return _state.local_target
