"""Process-wide settings, resolved in one place.

Each setting comes from the first of: :func:`configure`, the web framework's
settings (pushed by an adapter), environment variables, defaults.

==================  ==========================  =======================================
setting             environment variable        default
==================  ==========================  =======================================
``transport``       ``IM_TASK_TRANSPORT``       ``LocalTransport`` (Cloud Tasks on App Engine standard)
``secret``          ``IM_TASK_SECRET``          made once in ``data_dir`` (development, local queue only)
``data_dir``        ``IM_TASK_DATA_DIR``        ``.im_task`` in the working directory
``max_body_size``   ``IM_TASK_MAX_BODY_SIZE``   1,048,576 bytes
``warmup_module``   ``IM_TASK_WARMUP_MODULE``   none
``default_queue``   ``IM_TASK_DEFAULT_QUEUE``   ``"default"``
``environment``     ``IM_TASK_ENV``             ``"production"`` on App Engine or Cloud Run, else ``"development"``
``payload_store``   ``IM_TASK_PAYLOAD_STORE``   ``"ndb"`` on App Engine or Cloud Run, else ``"local"``
==================  ==========================  =======================================

Google Cloud (Cloud Tasks, and who may call the endpoint):

=========================  =================================  ==============================================
setting                    environment variable               meaning
=========================  =================================  ==============================================
``project``                ``IM_TASK_PROJECT``                Cloud Tasks project (else ``GOOGLE_CLOUD_PROJECT``)
``location``               ``IM_TASK_LOCATION``               Cloud Tasks location, e.g. ``"europe-west1"``
``base_url``               ``IM_TASK_BASE_URL``               the app's absolute URL: tasks are HTTP-target tasks
``service_account_email``  ``IM_TASK_SERVICE_ACCOUNT_EMAIL``  account of the OIDC tokens tasks carry and the
                                                              endpoint expects
``audience``               ``IM_TASK_AUDIENCE``               audience of those tokens (``base_url`` by default)
``background_service``     ``IM_TASK_BACKGROUND_SERVICE``     App Engine service that runs tasks enqueued from
                                                              the default service
``front_authenticated``    ``IM_TASK_FRONT_AUTHENTICATED``    callers are authenticated in front of the app
                                                              (Cloud Run's "require authentication"): HTTP-target
                                                              tasks are accepted without an OIDC check
=========================  =================================  ==============================================

``accept_legacy_payloads`` (``IM_TASK_ACCEPT_LEGACY_PAYLOADS``, default
false) lets the deferred endpoints run the unsigned pickles App Engine's
``deferred`` wrote, for a migration window; it is refused at start-up
except in production on App Engine (see :mod:`im_task.deferred`).

``envelope_lifetime`` (``IM_TASK_ENVELOPE_LIFETIME``, seconds, default 31
days) is how long after its schedule time a task's signed envelope is
accepted; ``accept_unbound_envelopes`` (``IM_TASK_ACCEPT_UNBOUND_ENVELOPES``,
default true) keeps the endpoint reading the envelopes of im-task before
envelopes were bound to their task, for a rolling deploy (see :mod:`im_task.envelope`).

``dead_letter_store`` (``IM_TASK_DEAD_LETTER_STORE``) is where the endpoint
keeps the tasks that failed permanently, gave up or were dropped: a
:class:`~im_task.deadletter.DeadLetterStore`, or ``"local"``, ``"ndb"``,
``"none"`` or ``"package.module:factory"``; by default the payload store's kind
(see :mod:`im_task.stores.deadletters`). ``log_outcomes``
(``IM_TASK_LOG_OUTCOMES``, default true) logs one INFO line per task outcome.

``secret`` may be a list: the first signs, all verify; ``IM_TASK_SECRET``
takes several separated by commas (a WARNING says how many were read). Each
is at least 32 bytes and not mostly repetition (see
:func:`im_task.keys.coerce_secret`). With none configured, a development
secret is made in ``data_dir``, only for the local queue and the in-process
transports (see :func:`uses_local_secret`). ``transport`` may be a ``Transport``, or a
name: ``"local"``, ``"immediate"``, ``"recording"``, ``"cloudtasks"``, or ``"package.module:factory"``;
:mod:`im_task.runtime` makes it (this module imports no transport).
``payload_store`` (where tasks over the transport's inline limit keep their
payload) may be a :class:`~im_task.stores.PayloadStore`, or a name:
``"local"``, ``"ndb"``, ``"package.module:factory"``, or ``"none"`` (tasks over
the limit are refused with ``TaskTooLargeError``, as before 2.0's payload
stores); :mod:`im_task.stores` makes it (this module imports no store).
Adapters read their framework's settings with
:func:`~im_task.adapter_settings.read_adapter_settings`, which knows the core
settings and the adapter-level keys (``route``, ``register_local_target``) and
refuses unknown keys with a "did you mean". Each setting's value is checked by
:func:`~im_task.setting_values.validate_setting`, whatever its source.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from im_task.datadir import SECRET_FILE as LOCAL_SECRET_FILE
from im_task.errors import ConfigurationError
from im_task.keys import MAKE_SECRET, Keyring, load_or_create_local_secret
from im_task.names import DEFAULT_DATA_DIR, DEFAULT_QUEUE, ENV_PREFIX, did_you_mean
from im_task.setting_values import DEFAULT_ENVELOPE_LIFETIME, DEFAULT_MAX_BODY_SIZE, SETTING_NAMES, validate_setting
from im_task.state import STATE, close_quietly

__all__ = [
    "ENVIRONMENT_VARIABLES",
    "SETTING_NAMES",
    "Settings",
    "configure",
    "environment_variable",
    "get_keyring",
    "get_settings",
    "reset",
    "set_framework_settings",
    "transport_choice",
    "unknown_environment_variables",
    "uses_local_secret",
]

logger = logging.getLogger("im_task")

Environment = Literal["development", "production"]


def environment_variable(name: str) -> str:
    """The environment variable of a setting (``IM_TASK_ENV`` for ``environment``), and Flask's key for it."""
    return ENV_PREFIX + ("ENV" if name == "environment" else name.upper())


#: Every ``IM_TASK_*`` environment variable im-task reads; others are reported as unknown.
ENVIRONMENT_VARIABLES: set[str] = {environment_variable(name) for name in SETTING_NAMES}


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
        data_dir_configured: Whether ``data_dir`` was set (by any source) rather than defaulted.
        project: Cloud Tasks project, or None (then ``GOOGLE_CLOUD_PROJECT``).
        location: Cloud Tasks location, or None.
        base_url: The application's absolute base URL (no trailing slash), or None.
        service_account_email: The service account of the tasks' OIDC tokens, or None.
        audience: The audience of those tokens, or None (then ``base_url``).
        background_service: App Engine service for tasks enqueued from the default service, or None.
        front_authenticated: Whether callers are authenticated in front of the application.
        accept_legacy_payloads: Whether the deferred endpoints run unsigned legacy ``deferred`` pickles
            (production on App Engine only; see :mod:`im_task.deferred`).
        payload_store: The payload store given, a name of one, or None for the default.
        dead_letter_store: The dead-letter store given, a name of one, or None for the payload store's kind.
        log_outcomes: Whether the endpoint logs one INFO line per task outcome.
        envelope_lifetime: How long after its schedule time a task's envelope is accepted, in seconds.
        accept_unbound_envelopes: Whether the endpoint still accepts envelopes made before envelopes were
            bound to their task (versions 1 and 2), for a rolling deploy.
    """

    transport: Any
    secrets: tuple[bytes, ...] = field(repr=False)  # never in logs
    data_dir: Path
    max_body_size: int
    warmup_module: str | None
    default_queue: str
    environment: Environment
    data_dir_configured: bool = True
    project: str | None = None
    location: str | None = None
    base_url: str | None = None
    service_account_email: str | None = None
    audience: str | None = None
    background_service: str | None = None
    front_authenticated: bool = False
    accept_legacy_payloads: bool = False
    payload_store: Any = None
    dead_letter_store: Any = None
    log_outcomes: bool = True
    envelope_lifetime: float = DEFAULT_ENVELOPE_LIFETIME
    accept_unbound_envelopes: bool = True

    @property
    def production(self) -> bool:
        """Whether unsafe configuration must be refused."""
        return self.environment == "production"

    def transport_shape(self) -> tuple[Any, ...]:
        """The settings a transport made from them depends on; when they change, it is made anew."""
        return (
            self.transport,
            self.data_dir,
            self.project,
            self.location,
            self.base_url,
            self.service_account_email,
            self.audience,
            self.background_service,
            self.dead_letter_store,  # the local queue records what it gives up on there
        )

    def local_data_dir(self) -> Path:
        """``data_dir``, for files im-task writes there (the local queue, the local secret).

        Raises:
            ConfigurationError: Under the pytest plugin, when ``data_dir`` is
                the working directory's default: a test would write to the
                project's real queue. The message names the fixtures to use.
        """
        guard = STATE.guard
        if guard and not self.data_dir_configured:
            raise ConfigurationError(guard)
        return self.data_dir


def configure(**settings: Any) -> None:
    """Sets process-wide settings, changing only those given.

    Args:
        **settings: Any of ``transport``, ``secret``, ``data_dir``,
            ``max_body_size``, ``warmup_module``, ``default_queue``,
            ``environment``, ``payload_store``, and the others of the module docstring.
            ``None`` returns a setting to its next source.

    Raises:
        ConfigurationError: For an unknown setting or a bad value; nothing is
            changed then.

    Example:
        >>> from im_task import configure
        >>> from im_task.transports import ImmediateTransport
        >>> configure(transport=ImmediateTransport(), secret="a-long-enough-secret-value-0123456789")
    """
    checked = _checked(settings, source="configure()")
    with _changing():
        for name in settings:
            if name in checked:
                STATE.explicit[name] = checked[name]
            else:
                STATE.explicit.pop(name, None)


def set_framework_settings(values: Mapping[str, Any], *, source: str) -> None:
    """Replaces the settings an adapter read from its framework's configuration.

    Args:
        values: Settings by their :func:`configure` names; ``None`` values are ignored.
        source: Where they came from (e.g. ``"settings.IM_TASK"``), for error messages.
    """
    checked = _checked(values, source=source)
    with _changing():
        STATE.framework = checked


def _checked(values: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """Validates settings; returns those that are not None."""
    for name in sorted(set(values) - set(SETTING_NAMES)):
        raise ConfigurationError(
            f"{source}: unknown setting {name!r}{did_you_mean(name, SETTING_NAMES)}; known: {', '.join(SETTING_NAMES)}."
        )
    return {name: validate_setting(name, value, source) for name, value in values.items() if value is not None}


@contextmanager
def _changing(*, drop_transport: bool = False) -> Iterator[None]:
    """Changes settings under the lock, then forgets what was resolved from the old ones.

    The transport is kept unless the settings that shape it
    (:meth:`Settings.transport_shape`: ``transport``, ``data_dir`` and the
    Google Cloud ones) changed. A transport made from a name (owned here) is
    closed after the lock is released: closing waits for deliveries in
    flight, and those may read the settings.
    """
    with STATE.lock:
        yield
        stale = _invalidate(drop_transport=drop_transport)
    if stale is not None:
        close_quietly(stale)


def _invalidate(*, drop_transport: bool = False) -> Any:
    STATE.settings = None
    STATE.keyring = None
    transport = STATE.transport
    if transport is None:
        return None
    if not drop_transport:
        try:
            settings = get_settings()
            if settings.transport_shape() == STATE.transport_made_with:
                return None
        except ConfigurationError:
            pass
    owned = STATE.owns_transport
    STATE.transport = None
    STATE.owns_transport = False
    STATE.transport_made_with = None
    return transport if owned else None


def reset() -> None:
    """Forgets every setting, the transport and the registered local target (for tests)."""
    with _changing(drop_transport=True):
        STATE.explicit.clear()
        STATE.framework.clear()
        STATE.local_target = None


def get_settings() -> Settings:
    """The settings in force, resolved from all sources."""
    with STATE.lock:
        if STATE.settings is None:
            STATE.settings = _resolve()
        settings: Settings = STATE.settings
        return settings


def _resolve() -> Settings:
    def pick(name: str) -> Any:
        for layer in (STATE.explicit, STATE.framework):
            if name in layer:
                return layer[name]
        variable = environment_variable(name)
        raw = os.environ.get(variable)
        return validate_setting(name, raw, f"${variable}") if raw else None

    secret = pick("secret")
    data_dir = pick("data_dir")
    environment: Environment = pick("environment") or ("production" if on_google_cloud() else "development")
    return Settings(
        transport=pick("transport"),
        secrets=secret or (),
        data_dir=data_dir or Path(DEFAULT_DATA_DIR),
        max_body_size=pick("max_body_size") or DEFAULT_MAX_BODY_SIZE,
        warmup_module=pick("warmup_module"),
        default_queue=pick("default_queue") or DEFAULT_QUEUE,
        environment=environment,
        data_dir_configured=data_dir is not None,
        project=pick("project"),
        location=pick("location"),
        base_url=pick("base_url"),
        service_account_email=pick("service_account_email"),
        audience=pick("audience"),
        background_service=pick("background_service"),
        front_authenticated=bool(pick("front_authenticated")),
        accept_legacy_payloads=bool(pick("accept_legacy_payloads")),
        payload_store=pick("payload_store"),
        dead_letter_store=pick("dead_letter_store"),
        log_outcomes=_default_true(pick("log_outcomes")),
        envelope_lifetime=pick("envelope_lifetime") or DEFAULT_ENVELOPE_LIFETIME,
        accept_unbound_envelopes=_default_true(pick("accept_unbound_envelopes")),
    )


STATE.resolver = get_settings


def on_google_cloud() -> bool:
    """Whether this process runs on App Engine (standard or flexible) or Cloud Run: production, by default."""
    return os.environ.get("GAE_ENV") in ("standard", "flex") or bool(os.environ.get("K_SERVICE"))


def _default_true(value: bool | None) -> bool:
    return True if value is None else value


def get_keyring() -> Keyring:
    """The keyring that signs and verifies envelopes.

    With no secret configured, a development secret is made in the data
    directory (see :func:`~im_task.keys.load_or_create_local_secret`), and a
    WARNING says so once per process. That is only done when the transport
    in force shares the data directory with the endpoint (see
    :func:`uses_local_secret`), and never in production.

    Raises:
        ConfigurationError: No secret is configured, and this is production
            or the transport is not the local queue nor an in-process one; or
            the local secret file is unsafe.
    """
    with STATE.lock:
        if STATE.keyring is None:
            settings = get_settings()
            if settings.secrets:
                STATE.keyring = Keyring(settings.secrets)
            elif settings.production:
                raise ConfigurationError(
                    f"No secret is configured and this is production: tasks cannot be signed safely. {_SET_A_SECRET}"
                )
            elif not uses_local_secret(settings):
                raise ConfigurationError(
                    f"No secret is configured, and the transport {_transport_label(settings)} does not share this "
                    "process's data directory, so a generated development secret cannot be used: the processes "
                    "that enqueue and run tasks would not agree on it, and it could leak with the data directory. "
                    "A generated secret is used only with the local queue and the in-process transports "
                    f"(immediate, recording). {_SET_A_SECRET}"
                )
            else:
                data_dir = settings.local_data_dir()
                STATE.keyring = Keyring([load_or_create_local_secret(data_dir)])
                if STATE.first_warning("local-secret"):
                    logger.warning(
                        "im-task signs tasks with a generated development secret, kept in %s. That is fine for the "
                        "local queue in development; anywhere else set IM_TASK_SECRET (or configure(secret=...)) "
                        "to a random value, the same in every process; make one with: %s",
                        data_dir / LOCAL_SECRET_FILE,
                        MAKE_SECRET,
                    )
        keyring: Keyring = STATE.keyring
        return keyring


STATE.keyring_resolver = get_keyring


_SET_A_SECRET = (
    "Set IM_TASK_SECRET (or configure(secret=...), or your framework's im-task secret setting) to a random value "
    "of at least 32 bytes, the same in every process that enqueues or runs tasks; make one with: " + MAKE_SECRET
)
#: The transport names that share the data directory with the endpoint (the local queue; in-process ones).
LOCAL_SECRET_TRANSPORT_NAMES = ("local", "immediate", "recording")


def transport_choice(settings: Settings) -> Any:
    """The transport setting in force: ``settings.transport``, or ``"cloudtasks"`` by default on App Engine standard.

    Args:
        settings: The settings.

    Returns:
        A ``Transport``, a name, or None for the local queue.
    """
    if settings.transport is None and os.environ.get("GAE_ENV") == "standard":
        return "cloudtasks"  # App Engine's default: Cloud Tasks with App Engine targets
    return settings.transport


def uses_local_secret(settings: Settings) -> bool:
    """Whether a generated development secret may sign tasks under these settings.

    Only when the transport shares the data directory with the endpoint: the
    local queue (``None`` or ``"local"`` off App Engine, a ``LocalTransport``)
    and the in-process transports (``"immediate"``, ``"recording"``, an
    ``InProcessTransport``), which deliver in this very process: the names,
    and the transports whose ``shares_data_directory`` is true. Cloud Tasks
    and any ``"package.module:factory"`` or other transport need a configured
    secret, in every environment; so does production.

    Args:
        settings: The settings.

    Returns:
        Whether a generated secret may be used.
    """
    if settings.production:
        return False
    choice = transport_choice(settings)
    if choice is None or isinstance(choice, str):
        return choice is None or choice in LOCAL_SECRET_TRANSPORT_NAMES
    return getattr(choice, "shares_data_directory", False) is True


def _transport_label(settings: Settings) -> str:
    choice = transport_choice(settings)
    return repr(choice) if isinstance(choice, str) else type(choice).__name__


def unknown_environment_variables() -> list[str]:
    """One line for each ``IM_TASK_*`` environment variable im-task does not read (a typo, most likely).

    Adapters log these at start-up; Django's system checks report them.

    Returns:
        Lines such as ``"$IM_TASK_SECRTE is not an im-task setting (did you mean 'IM_TASK_SECRET'?)"``.
    """
    return [
        f"${name} is not an im-task setting{did_you_mean(name, ENVIRONMENT_VARIABLES)}; it is ignored."
        for name in sorted(os.environ)
        if name.startswith(ENV_PREFIX) and name not in ENVIRONMENT_VARIABLES
    ]
