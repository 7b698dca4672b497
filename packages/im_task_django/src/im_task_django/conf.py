"""The ``IM_TASK`` setting: reading it, checking it and pushing it into im-task.

``IM_TASK`` follows Django's convention for settings dicts (``DATABASES``,
``TASKS``): its keys are upper case. Every key is optional. The core keys
are those of :func:`im_task.configure`, upper-cased, and go to the core as
framework settings (``configure()`` still wins over them); the others are
read by the adapter:

=========================  ==========================  ================================================
key                        default                     meaning
=========================  ==========================  ================================================
``TRANSPORT``              ``LocalTransport``          a ``Transport``, or ``"local"``, ``"immediate"``,
                                                       ``"recording"``, ``"package.module:factory"``
``SECRET``                 made once in ``DATA_DIR``   signing secret (or a list: first signs, all verify)
``DATA_DIR``               ``.im_task``                local queue, local secret and payloads
``MAX_BODY_SIZE``          ``1048576``                 largest task body the endpoint reads, in bytes
``WARMUP_MODULE``          none                        module imported before the first task runs
``DEFAULT_QUEUE``          ``"default"``               queue of tasks that name none
``ENVIRONMENT``            ``"development"``           ``"production"`` refuses to run without a secret
``ROUTE``                  ``get_taskroute()``         the task route, e.g. ``"/tasks"``
``REGISTER_LOCAL_TARGET``  ``True``                    deliver local-queue tasks to this project in process
``DATABASE``               ``"default"``               database alias of the outbox and its transactions
``SWEEP_OLDER_THAN``       ``60``                      seconds after a row's commit (or the end of its last
                                                       claim) before ``im_task_sweep`` sends it
``CLAIM_SECONDS``          ``30``                      seconds a sender's or a sweep's claim on a row lasts:
                                                       the longest a send may take
``SWEEP_INTERVAL``         none                        seconds between ``im_task_sweep`` runs, as scheduled;
                                                       checked against the queue's name memory (W006)
=========================  ==========================  ================================================

The dict is read by :func:`im_task.adapter_settings.read_adapter_settings`, the parser
every adapter uses: an unknown key is refused with the closest known one, a
lower-case key with the upper-case spelling it must have.

``ROUTE`` is applied as soon as Django creates the app's config, before any
app's models are imported; the rest when the app is ready. At start-up an
invalid or unsafe value (production without a secret) is refused with
``ImproperlyConfigured``. The setting is read again whenever it changes
(``override_settings`` in tests); an invalid value is then not applied: it
is recorded, logged and reported by the system checks.

Example:
    >>> read_settings({"DEFAULT_QUEUE": "mail", "DATABASE": "other"})  # doctest: +SKIP
    AppSettings(core={'default_queue': 'mail'}, route=None, register_local_target=True, database='other', ...)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from im_task import adapter_settings, caller, config, local_target, redaction, routing, setting_values
from im_task.errors import ConfigurationError

__all__ = [
    "SETTING_NAMES",
    "SOURCE",
    "AppSettings",
    "SettingsError",
    "apply_route_setting",
    "apply_settings",
    "apply_settings_at_startup",
    "get_app_settings",
    "get_settings_error",
    "read_settings",
    "setting_key",
]

logger = logging.getLogger("im_task.django")

#: Where the settings are written, for messages.
SOURCE = "settings.IM_TASK"
#: The dead-letter store of a project whose settings name none: its own database (``DeadLetterRecord``).
DJANGO_DEAD_LETTER_STORE = "im_task_django.deadletters:DjangoDeadLetterStore"
#: What to set, in Django, when the caller check of the endpoint cannot be made (:mod:`im_task.caller`).
CALLER_HINT = (
    "set IM_TASK['SERVICE_ACCOUNT_EMAIL'] and IM_TASK['AUDIENCE'] (or IM_TASK['BASE_URL']), or, if a front end "
    "authenticates every request, IM_TASK['FRONT_AUTHENTICATED'] = True (see the im-task security docs)."
)


def setting_key(name: str) -> str:
    """The ``IM_TASK`` key of a setting: its canonical name upper-cased (``"secret"`` → ``"SECRET"``)."""
    return name.upper()


def _check_database(value: Any, source: str) -> str:
    if isinstance(value, str) and value:
        return value
    raise ConfigurationError(f"{source} must be a database alias such as 'default', not {value!r}.")


def _check_seconds(value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigurationError(f"{source} must be a number of seconds >= 0, not {value!r}.")
    return float(value)


def _check_positive_seconds(value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ConfigurationError(f"{source} must be a number of seconds > 0, not {value!r}.")
    return float(value)


#: The adapter's own keys (besides the core settings and ``ROUTE``, ``REGISTER_LOCAL_TARGET``), with their checks.
_EXTRA = {
    "database": _check_database,
    "sweep_older_than": _check_seconds,
    "claim_seconds": _check_positive_seconds,
    "sweep_interval": _check_positive_seconds,
}
#: Every key ``IM_TASK`` may hold.
SETTING_NAMES = tuple(
    setting_key(name) for name in (*setting_values.SETTING_NAMES, *adapter_settings.ADAPTER_SETTING_NAMES, *_EXTRA)
)


class SettingsError(ConfigurationError):
    """``settings.IM_TASK`` is invalid.

    Attributes:
        check_id: The system check that reports it: ``im_task.E001`` (not a
            dict), ``E002`` (an unknown key, or one not in upper case),
            ``E003`` (a bad value).
    """

    def __init__(self, message: str, check_id: str) -> None:
        super().__init__(message)
        self.check_id = check_id


@dataclass(frozen=True)
class AppSettings:
    """``settings.IM_TASK``, read and checked.

    Attributes:
        core: The core settings it gives, by their :func:`im_task.configure` names.
        route: The task route it sets, or None to keep :func:`im_task.get_taskroute`.
        register_local_target: Whether the local queue delivers to this project in process.
        database: Alias of the database holding the outbox; ``transactional=True``
            tasks join this database's ``transaction.atomic()``.
        sweep_older_than: Seconds after an outbox row's commit, or the end of its last claim, before
            ``im_task_sweep`` sends it.
        claim_seconds: Seconds a claim on an outbox row lasts (the longest a send may take).
        sweep_interval: Seconds between ``im_task_sweep`` runs as scheduled, or None when not said.
    """

    core: Mapping[str, Any] = field(default_factory=dict)
    route: str | None = None
    register_local_target: bool = True
    database: str = "default"
    sweep_older_than: float = 60.0
    claim_seconds: float = 30.0
    sweep_interval: float | None = None

    def __repr__(self) -> str:
        return redaction.repr_without_secrets(self)  # the core settings' secret shows as <hidden>


def read_settings(raw: Any = None) -> AppSettings:
    """Reads an ``IM_TASK`` value without applying it.

    Args:
        raw: The value; ``settings.IM_TASK`` (``{}`` when unset) when None.

    Returns:
        The settings.

    Raises:
        SettingsError: For a value that is not a dict (``im_task.E001``), an
            unknown or lower-case key (``E002``), or a bad value (``E003``).
    """
    if raw is None:
        raw = getattr(django_settings, "IM_TASK", None)
        if raw is None:
            raw = {}
    if not isinstance(raw, Mapping):
        raise SettingsError(
            f"{SOURCE} must be a dict such as {{'SECRET': '...'}}, not {type(raw).__name__}.", "im_task.E001"
        )
    try:
        read = adapter_settings.read_adapter_settings(raw, source=SOURCE, spell=setting_key, extra=_EXTRA)
    except ConfigurationError as exc:
        unknown = any(key not in SETTING_NAMES for key in raw)  # keys are checked before values
        raise SettingsError(str(exc), "im_task.E002" if unknown else "im_task.E003") from None
    return AppSettings(
        core=dict(read.core),
        route=read.route,
        register_local_target=read.register_local_target,
        database=read.extra.get("database", "default"),
        sweep_older_than=read.extra.get("sweep_older_than", 60.0),
        claim_seconds=read.extra.get("claim_seconds", 30.0),
        sweep_interval=read.extra.get("sweep_interval"),
    )


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.applied = AppSettings()
        self.error: SettingsError | None = None
        self.route_before: str | None = None  # the route to restore when IM_TASK stops setting one


_state = _State()


def apply_settings() -> AppSettings:
    """Reads ``settings.IM_TASK`` and pushes it into im-task.

    The app calls this when it is ready and whenever the setting changes;
    tests call it after :func:`im_task.config.reset`. The core settings go to
    :func:`im_task.config.set_framework_settings`, ``ROUTE`` to
    :func:`im_task.set_taskroute`, and the project's WSGI application is
    registered as the local queue's target. An invalid setting is not
    applied: the error is logged and kept for the system checks, and the
    settings applied before stay in force.

    Returns:
        The settings in force.
    """
    from im_task_django.wsgi import project_wsgi_application

    with _state.lock:
        route_before = routing.get_taskroute()
        try:
            app_settings = read_settings()
            _apply_route(app_settings.route)
            config.set_framework_settings(_with_dead_letters(app_settings.core), source=SOURCE)
        except ConfigurationError as exc:
            routing.set_taskroute(route_before)
            error = exc if isinstance(exc, SettingsError) else SettingsError(str(exc), "im_task.E003")
            _state.error = error
            logger.error("%s is not applied: %s", SOURCE, error)
            return _state.applied
        _state.error = None
        if app_settings.register_local_target:
            local_target.register_local_target(project_wsgi_application)
        elif local_target.get_local_target() is project_wsgi_application:
            local_target.register_local_target(None)  # one registered by other code stays
        _state.applied = app_settings
        return app_settings


def _with_dead_letters(core: Mapping[str, Any]) -> dict[str, Any]:
    """The core settings, with the project's database as the dead-letter store unless a store is named."""
    if "dead_letter_store" in core or os.environ.get(config.environment_variable("dead_letter_store")):
        return dict(core)
    return {**core, "dead_letter_store": DJANGO_DEAD_LETTER_STORE}


def apply_settings_at_startup() -> AppSettings:
    """Applies ``settings.IM_TASK`` when the app is ready, refusing what would be unsafe.

    Unlike :func:`apply_settings`, an invalid value is an error here, and so
    is production without a secret (as the Flask and webapp2 adapters refuse
    them at set-up): a server must not start with settings other than those
    written, nor with tasks it cannot sign. The transport is not made (it is
    made on the first request, so ``manage.py migrate`` sends nothing).

    Returns:
        The settings in force.

    Raises:
        ImproperlyConfigured: ``IM_TASK`` is invalid, an ``IM_TASK_*``
            environment variable is, the environment is production and no
            secret is configured, or the caller check cannot be made (see
            :func:`im_task.caller.check_configuration`).
    """
    applied = apply_settings()
    error = _state.error
    if error is not None:
        raise ImproperlyConfigured(
            f"im-task refuses to start: {error} Fix settings.IM_TASK (its keys are in the im-task Django docs); "
            "`manage.py check` lists every problem."
        )
    try:
        current = config.get_settings()
    except ConfigurationError as exc:  # from an IM_TASK_* environment variable
        raise ImproperlyConfigured(f"im-task refuses to start: {exc}") from exc
    if current.production:
        try:
            config.get_keyring()  # refuses a missing secret; in production it never makes a local one
        except ConfigurationError as exc:
            raise ImproperlyConfigured(
                f"im-task refuses to start: {exc} In Django: set IM_TASK['SECRET'] (for instance to "
                "os.environ['IM_TASK_SECRET']), or leave IM_TASK['ENVIRONMENT'] at 'development' on a "
                "development machine."
            ) from exc
    try:
        for line in caller.check_configuration(current):  # who may call the endpoint (im_task.caller)
            logger.warning("%s", line)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"im-task refuses to start: {exc} In Django: {CALLER_HINT}") from exc
    return applied


def apply_route_setting() -> None:
    """Sets the task route from ``IM_TASK["ROUTE"]``, before any app's models are imported.

    The app calls this when Django creates its app config, so that tasks
    defined in ``models.py`` or imported by another app's ``ready()`` get
    their URLs under the route. An invalid ``IM_TASK`` is left for
    :func:`apply_settings_at_startup` to refuse.
    """
    with _state.lock:
        try:
            _apply_route(read_settings().route)
        except ConfigurationError:
            return  # refused when the app is ready


def _apply_route(route: str | None) -> None:
    if route is not None:
        before = routing.get_taskroute()
        routing.set_taskroute(route)  # checks it first
        if _state.route_before is None:
            _state.route_before = before
    elif _state.route_before is not None:
        routing.set_taskroute(_state.route_before)
        _state.route_before = None


def get_app_settings() -> AppSettings:
    """The settings in force (those of the last valid ``IM_TASK``)."""
    return _state.applied


def get_settings_error() -> SettingsError | None:
    """Why the current ``IM_TASK`` was not applied, or None when it was."""
    return _state.error


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "IM_TASK":
        apply_settings()
    elif setting == "WSGI_APPLICATION":
        from im_task_django.wsgi import project_wsgi_application

        project_wsgi_application.forget()


def connect_signals() -> None:
    """Re-reads the settings whenever ``IM_TASK`` or ``WSGI_APPLICATION`` changes."""
    setting_changed.connect(_on_setting_changed, dispatch_uid="im_task_django.conf")
