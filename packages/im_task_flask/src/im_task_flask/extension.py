"""The Flask extension: ``ImTask(app)`` or ``ImTask().init_app(app)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, request

from im_task.adapter_settings import ADAPTER_SETTING_NAMES, read_adapter_settings
from im_task.config import environment_variable
from im_task.errors import ConfigurationError
from im_task.names import ENV_PREFIX
from im_task.redaction import repr_without_secrets
from im_task.routing import get_taskroute
from im_task.runtime import set_up_framework
from im_task.setting_values import SETTING_NAMES
from im_task_flask.blueprint import make_blueprint

__all__ = ["CONFIG_KEYS", "EXTENSION_NAME", "ImTask", "ImTaskState", "config_key"]

#: Key of the extension's state in ``app.extensions``.
EXTENSION_NAME = "im_task"


def config_key(name: str) -> str:
    """The ``app.config`` key of a setting: its environment variable's name (``IM_TASK_ENV`` for ``environment``).

    Args:
        name: A canonical setting name, such as ``"secret"`` or ``"route"``.

    Returns:
        The key, such as ``"IM_TASK_SECRET"``.
    """
    return environment_variable(name)


#: Every ``app.config`` key the extension reads, with the setting each one sets (derived from the core's names).
CONFIG_KEYS: Mapping[str, str] = {config_key(name): name for name in (*SETTING_NAMES, *ADAPTER_SETTING_NAMES)}


@dataclass(frozen=True)
class ImTaskState:
    """What :class:`ImTask` keeps for one app, in ``app.extensions["im_task"]``.

    Attributes:
        extension: The :class:`ImTask` that set the app up.
        route: The task route the blueprint serves.
        blueprint: The registered blueprint.
        settings: The core settings read from ``app.config`` (unset keys left out).
        local_target: Whether the app was registered as the local queue's in-process target.
        csrf_exempt: Whether the blueprint was exempted from Flask-WTF's CSRF protection.
    """

    extension: ImTask
    route: str
    blueprint: Blueprint
    settings: Mapping[str, Any] = field(default_factory=dict)
    local_target: bool = True
    csrf_exempt: bool = False

    def __repr__(self) -> str:
        return repr_without_secrets(self)  # the settings' secret shows as <hidden>


class ImTask:
    """Serves im-task's task endpoint from a Flask app.

    Use ``ImTask(app)``, or ``im_task = ImTask()`` then ``im_task.init_app(app)``
    in an app factory. Setting up an app reads its configuration into the
    im-task core, registers the task blueprint, names the app as the target of
    the embedded local queue, and checks the configuration so that an unsafe
    one fails at start-up rather than at the first task.

    Configuration keys (``app.config``; each defaults to ``None``, meaning the
    core's next source: ``im_task.configure()`` wins over these, these over
    environment variables, environment variables over built-in defaults):

    =====================================  =============================================================
    key                                    meaning
    =====================================  =============================================================
    ``IM_TASK_SECRET``                     signing secret (str or bytes), or a list (first signs, all verify);
                                           required in production
    ``IM_TASK_TRANSPORT``                  a ``Transport``, or ``"local"``, ``"immediate"``, ``"recording"``,
                                           ``"package.module:factory"``
    ``IM_TASK_ROUTE``                      task route, e.g. ``"/tasks"``, passed to ``set_taskroute``: it applies
                                           to tasks made after ``init_app``; ``None`` keeps the current one
    ``IM_TASK_DATA_DIR``                   directory of the local queue, local secret and local payloads
    ``IM_TASK_MAX_BODY_SIZE``              largest task body read, in bytes (1 MiB by default); 413 above
    ``IM_TASK_WARMUP_MODULE``              module imported before the first task runs
    ``IM_TASK_DEFAULT_QUEUE``              queue of tasks that name none (``"default"``)
    ``IM_TASK_ENV``                        ``"development"`` or ``"production"``
    ``IM_TASK_PROJECT``                    Google Cloud project of the Cloud Tasks queues
    ``IM_TASK_LOCATION``                   Cloud Tasks location, e.g. ``"europe-west1"``
    ``IM_TASK_BASE_URL``                   the app's absolute URL: tasks become HTTP-target tasks
    ``IM_TASK_SERVICE_ACCOUNT_EMAIL``      service account of the tasks' OIDC tokens (sent and checked)
    ``IM_TASK_AUDIENCE``                   audience of those tokens (``IM_TASK_BASE_URL`` by default)
    ``IM_TASK_BACKGROUND_SERVICE``         App Engine service for tasks enqueued from the default service
    ``IM_TASK_FRONT_AUTHENTICATED``        callers are authenticated in front of the app (see the security docs)
    ``IM_TASK_ACCEPT_LEGACY_PAYLOADS``     run App Engine ``deferred``'s unsigned pickles (App Engine production
                                           only, for a migration window; see the migration docs)
    ``IM_TASK_PAYLOAD_STORE``              where tasks over the inline limit keep their payload: a store,
                                           ``"local"``, ``"ndb"``, ``"none"`` or ``"module:factory"``
    ``IM_TASK_DEAD_LETTER_STORE``          where tasks that failed permanently, gave up or were dropped are
                                           kept (default: the payload store's kind)
    ``IM_TASK_LOG_OUTCOMES``               one INFO line per task outcome (default ``True``)
    ``IM_TASK_ENVELOPE_LIFETIME``          how long after its schedule time a task's envelope is accepted,
                                           in seconds (default 31 days)
    ``IM_TASK_ACCEPT_UNBOUND_ENVELOPES``   keep accepting envelopes made before they were bound to their
                                           task, during a rolling deploy (default ``True``)
    ``IM_TASK_REGISTER_LOCAL_TARGET``      register the app as the local queue's in-process target
                                           (default ``True``)
    =====================================  =============================================================

    Every ``app.config`` key that starts with ``IM_TASK_`` (in any case) must
    be one of these, written as above: ``init_app`` refuses an unknown key
    with the closest known one (``'IM_TASK_SECRTE'`` ... did you mean
    ``'IM_TASK_SECRET'``?), and a key written in the wrong case with its
    right spelling, so that a typo never leaves a setting silently unset.
    Unknown ``IM_TASK_*`` environment variables are logged as warnings at
    start-up, on the ``im_task`` logger, likewise with the closest known name.

    The core's settings are process-wide: with several apps in one process,
    the last app set up provides them, and is the local queue's target.

    The task blueprint is exempt from Flask-WTF's ``CSRFProtect`` whether it
    is set up before or after this extension: tasks are authenticated by the
    HMAC signature of their body, not by a cookie, so a CSRF token would add
    nothing, and a queue could not send one.

    Args:
        app: The app to set up now, or None to call :meth:`init_app` later.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> ImTaskState:
        """Sets up ``app`` to serve tasks.

        Args:
            app: The Flask application.

        Returns:
            The state stored in ``app.extensions["im_task"]``.

        Raises:
            ConfigurationError: If the app is already set up, an ``IM_TASK_*``
                key is unknown or misspelt, a configuration value is invalid,
                or the configuration is unsafe (such as production without a
                secret). Nothing is changed then.
        """
        if not isinstance(app, Flask):
            raise ConfigurationError(f"ImTask.init_app needs a Flask application, not {type(app).__name__}.")
        if EXTENSION_NAME in app.extensions:
            raise ConfigurationError(
                f"im-task is already set up on the Flask app {app.name!r}; call ImTask(app) or init_app(app) once "
                "per app."
            )
        source = f"Flask app {app.name!r}: app.config"
        written = {key: value for key, value in app.config.items() if key.upper().startswith(ENV_PREFIX)}
        read = read_adapter_settings(written, source=source, spell=config_key)
        set_up_framework(
            read.core,
            source=source,
            local_target=app if read.register_local_target else None,
            route=read.route,
        )
        for key, name in CONFIG_KEYS.items():
            app.config.setdefault(key, True if name == "register_local_target" else None)
        route = get_taskroute()

        blueprint = make_blueprint(route)
        app.register_blueprint(blueprint)
        exempted = _exempt_from_csrf(app, blueprint)
        state = ImTaskState(
            extension=self,
            route=route,
            blueprint=blueprint,
            settings=read.core,
            local_target=read.register_local_target,
            csrf_exempt=exempted,
        )
        app.extensions[EXTENSION_NAME] = state
        return state


def _exempt_from_csrf(app: Flask, blueprint: Blueprint) -> bool:
    """Exempts the task blueprint from Flask-WTF's CSRF protection, now or when it shows up.

    When ``CSRFProtect`` is already set up, the blueprint is exempted at once.
    Otherwise a request hook, which runs before any hook ``CSRFProtect`` adds
    later, exempts it on the first task request that finds it there.

    Returns:
        Whether the blueprint was exempted now.
    """
    csrf = app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(blueprint)
        return True

    def exempt_when_protected() -> None:
        if request.blueprint == blueprint.name:
            late_csrf = app.extensions.get("csrf")
            if late_csrf is not None:
                late_csrf.exempt(blueprint)

    app.before_request(exempt_when_protected)
    return False
