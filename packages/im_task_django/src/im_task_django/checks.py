"""System checks (``manage.py check``) for the im-task setup.

======================  ===================================================================
id                      problem
======================  ===================================================================
``im_task.E001``        ``IM_TASK`` is not a dict
``im_task.E002``        ``IM_TASK`` has an unknown key, or a key not in upper case
``im_task.E003``        ``IM_TASK`` (or an ``IM_TASK_*`` environment variable) has an invalid value
``im_task.E004``        no secret while the environment is production
``im_task.E005``        the transport is unknown or cannot be imported
``im_task.E006``        the task route is not mounted in the URLconf
``im_task.E007``        ``IM_TASK["DATABASE"]`` is not in ``DATABASES``
``im_task.E008``        a top-level ``IM_TASK_*`` Django setting (``IM_TASK_SECRET = ...``), which
                        im-task does not read: its settings go in the ``IM_TASK`` dict
``im_task.E009``        who calls the endpoint cannot be checked: production that would accept HTTP-target
                        tasks without an OIDC check, or an incomplete OIDC configuration
``im_task.W001``        the local queue in use delivers to this project in process
                        (``Host: localhost``), which ``ALLOWED_HOSTS`` refuses
``im_task.W002``        ``SECURE_SSL_REDIRECT`` redirects requests to an endpoint, which queues do not follow
``im_task.W003``        (``check --deploy``) no secret configured: a local one is generated
``im_task.W004``        an ``IM_TASK_*`` environment variable that im-task does not read (a typo, most likely)
``im_task.W005``        ``FRONT_AUTHENTICATED`` in production: HTTP-target tasks are accepted without an OIDC check
``im_task.W006``        the outbox sweep may come later than the queue remembers task names
                        (``CLAIM_SECONDS`` + ``SWEEP_OLDER_THAN`` + ``SWEEP_INTERVAL`` over half the
                        transport's ``name_retention``), so a task sent just before a crash may run twice
``im_task.E101``        ``TASKS[...]["OPTIONS"]`` of an ``ImTaskBackend`` has an unknown key or a bad value
``im_task.E102``        ``TASKS[...]["QUEUES"]`` of an ``ImTaskBackend`` names a queue im-task cannot use
``im_task.E103``        ``TASKS`` uses ``ImTaskBackend`` but ``im_task_django`` is not in ``INSTALLED_APPS``
``im_task.E104``        ``TASKS`` uses ``ImTaskBackend`` but Django's task framework is not installed
``im_task.W101``        ``TASKS`` uses ``ImTaskBackend`` on the ``django-tasks`` backport, which is not in
                        ``INSTALLED_APPS`` (its checks, the backend's E101-E103 among them, do not run)
======================  ===================================================================
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Tags, register
from django.db import connections
from django.http.request import validate_host
from django.urls import Resolver404, resolve

from im_task import caller, config, local_target, routing, setting_values
from im_task.config import Settings
from im_task.endpoints import endpoints
from im_task.errors import ConfigurationError
from im_task.names import ENV_PREFIX, did_you_mean
from im_task.state import STATE
from im_task.transports.base import Transport
from im_task.transports.factory import load_transport_setting
from im_task.transports.local import LocalTransport
from im_task_django.conf import CALLER_HINT, SETTING_NAMES, get_app_settings, get_settings_error, setting_key
from im_task_django.wsgi import delivery_host

__all__ = [
    "check_caller",
    "check_database",
    "check_environment_variables",
    "check_local_delivery",
    "check_outbox_timing",
    "check_route_mounted",
    "check_secret",
    "check_secret_deploy",
    "check_settings",
    "check_ssl_redirect",
    "check_task_framework",
    "check_top_level_settings",
    "check_transport",
]

PROBE = "im-task-check/probe"


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001-E003: ``IM_TASK`` is a dict of known upper-case keys with valid values."""
    error = get_settings_error()
    if error is not None:
        return [
            checks.Error(
                str(error),
                hint="Fix settings.IM_TASK; until then it is not applied. Its keys (upper case, as in DATABASES) "
                "are in the im-task Django docs.",
                id=error.check_id,
            )
        ]
    try:
        config.get_settings()
    except ConfigurationError as exc:  # from an IM_TASK_* environment variable
        return [checks.Error(str(exc), hint="Fix or unset the IM_TASK_* environment variable.", id="im_task.E003")]
    return []


@register()
def check_top_level_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E008: no ``IM_TASK_*`` Django setting, which im-task would ignore."""
    return [
        checks.Error(
            f"settings.{name} is not read by im-task: its Django settings go in one dict, settings.IM_TASK.",
            hint=_move_hint(name[len(ENV_PREFIX) :]),
            id="im_task.E008",
        )
        for name in sorted(dir(settings))
        if name.startswith(ENV_PREFIX)
    ]


def _move_hint(rest: str) -> str:
    """What to write instead of ``IM_TASK_<rest> = ...``."""
    by_variable = {
        config.environment_variable(name)[len(ENV_PREFIX) :]: setting_key(name) for name in setting_values.SETTING_NAMES
    }
    key = rest if rest in SETTING_NAMES else by_variable.get(rest)
    if key is not None:
        return f'Move it into IM_TASK = {{"{key}": ...}}.'
    return (
        f"IM_TASK has no key {rest!r}{did_you_mean(rest, SETTING_NAMES)}; its keys are {', '.join(SETTING_NAMES)}. "
        "If it is a variable of your own, rename it so that it does not start with IM_TASK_."
    )


@register()
def check_environment_variables(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W004: every ``IM_TASK_*`` environment variable is one im-task reads."""
    return [
        checks.Warning(
            line,
            hint="Fix its name or unset it; in a Django project, settings.IM_TASK holds im-task's settings.",
            id="im_task.W004",
        )
        for line in config.unknown_environment_variables()
    ]


@register(Tags.security)
def check_secret(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E004: production needs a configured secret."""
    current = _core_settings()
    if current is None or not current.production:
        return []
    try:
        config.get_keyring()  # the core's refusal; in production it never makes a local secret
    except ConfigurationError as exc:
        return [
            checks.Error(
                str(exc),
                hint="Set IM_TASK['SECRET'] (or $IM_TASK_SECRET) to a random value of at least 32 bytes, the same "
                "in every process that enqueues or runs tasks; make one with: "
                'python -c "import secrets; print(secrets.token_hex(32))"',
                id="im_task.E004",
            )
        ]
    return []


@register(Tags.security)
def check_caller(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E009, W005: who calls the endpoint can be checked (:func:`im_task.caller.check_configuration`)."""
    current = _core_settings()
    if current is None:
        return []
    try:
        lines = caller.check_configuration(current)
    except ConfigurationError as exc:
        return [checks.Error(str(exc), hint=CALLER_HINT[0].upper() + CALLER_HINT[1:], id="im_task.E009")]
    return [checks.Warning(line, id="im_task.W005") for line in lines]


@register(Tags.security, deploy=True)
def check_secret_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W003 (``check --deploy``): a deployment should not rely on the generated local secret."""
    current = _core_settings()
    if current is None or current.secrets or current.production:
        return []  # production without a secret is E004
    return [
        checks.Warning(
            "im-task has no secret configured: it signs tasks with a secret generated in its data_dir, "
            "which other machines do not share.",
            hint="Set IM_TASK['SECRET'] (or $IM_TASK_SECRET) and IM_TASK['ENVIRONMENT'] = 'production' when deploying.",
            id="im_task.W003",
        )
    ]


@register()
def check_transport(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E005: the transport setting names something the runtime can load (the runtime's own loader decides)."""
    current = _core_settings()
    choice = current.transport if current else None
    if not isinstance(choice, str):
        return []  # a Transport, or None for the default
    try:
        load_transport_setting(choice)
    except ConfigurationError as exc:
        return [
            checks.Error(
                str(exc),
                hint="Set IM_TASK['TRANSPORT'] to 'local', 'immediate', 'recording', a Transport instance, or "
                "'package.module:factory' naming a Transport or a callable that returns one.",
                id="im_task.E005",
            )
        ]
    return []


@register(Tags.urls)
def check_route_mounted(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E006: a request under the task route reaches the task endpoint's view."""
    from im_task_django.views import endpoint_view, task_view

    route = routing.get_taskroute()
    probe = f"{route}/{PROBE}"
    try:
        match = resolve(probe)
    except Resolver404:
        reached = "nothing"
    else:
        endpoint = match.kwargs.get("endpoint")
        if match.func is task_view or (match.func is endpoint_view and getattr(endpoint, "name", None) == "task"):
            return []
        reached = f"the view {match.view_name or match.func!r}"
    return [
        checks.Error(
            f"Tasks are POSTed under {route}, but {probe} reaches {reached} in the URLconf.",
            hint="Add path('', include('im_task_django.urls')) to your ROOT_URLCONF, before catch-all patterns "
            "and without a prefix (the prefix comes from the task route).",
            id="im_task.E006",
        )
    ]


@register()
def check_database(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E007: the outbox database alias exists."""
    alias = get_app_settings().database
    if alias in connections:
        return []
    return [
        checks.Error(
            f"IM_TASK['DATABASE'] is {alias!r}, which is not in settings.DATABASES.",
            hint=f"Use one of {', '.join(map(repr, connections))}.",
            id="im_task.E007",
        )
    ]


@register()
def check_local_delivery(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W001: the local queue in use delivers to this project in process, and ``ALLOWED_HOSTS`` lets it."""
    if settings.DEBUG or not _delivers_in_process():
        return []  # with DEBUG, Django allows localhost when ALLOWED_HOSTS is empty
    if validate_host(delivery_host(), settings.ALLOWED_HOSTS):
        return []  # in-process deliveries use 'localhost', or a host ALLOWED_HOSTS names
    return [
        checks.Warning(
            "The local im-task queue delivers tasks to this project in process, but ALLOWED_HOSTS is empty with "
            "DEBUG off, so Django refuses every Host (400) and those tasks would be retried until they give up.",
            hint="Add 'localhost' to ALLOWED_HOSTS, or configure another transport.",
            id="im_task.W001",
        )
    ]


@register(Tags.security)
def check_ssl_redirect(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W002: ``SECURE_SSL_REDIRECT`` does not redirect requests to the endpoints."""
    if not getattr(settings, "SECURE_SSL_REDIRECT", False):
        return []
    exempt = getattr(settings, "SECURE_REDIRECT_EXEMPT", [])
    redirected: dict[str, str] = {}  # path -> the exemption to add
    for endpoint in endpoints():
        base = endpoint.path().lstrip("/")
        probe = f"{base}/{PROBE}" if endpoint.prefix else base
        if not any(re.search(pattern, probe) for pattern in exempt):
            redirected["/" + base] = f"^{base}/" if endpoint.prefix else f"^{base}$"
    if not redirected:
        return []
    return [
        checks.Warning(
            f"SECURE_SSL_REDIRECT redirects plain-HTTP requests to im-task's endpoints ({', '.join(redirected)}), "
            "and task queues do not follow redirects.",
            hint=f"Add {', '.join(map(repr, redirected.values()))} to SECURE_REDIRECT_EXEMPT, "
            "unless every queue reaches this project over HTTPS.",
            id="im_task.W002",
        )
    ]


@register()
def check_outbox_timing(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W006: the outbox sweep re-sends a row well within the time the queue remembers task names.

    A process that dies after the queue took a task but before the outbox
    marked it sent leaves a row the sweep sends again; the queue refuses that
    copy by name only while it remembers the name. The longest wait is the
    claim, then ``SWEEP_OLDER_THAN``, then up to one ``SWEEP_INTERVAL``; it
    must stay under half the transport's ``name_retention`` (known for the
    local queue and any transport with a ``name_retention`` attribute).
    """
    retention = _name_retention()
    if retention is None:
        return []
    app_settings = get_app_settings()
    parts = {"CLAIM_SECONDS": app_settings.claim_seconds, "SWEEP_OLDER_THAN": app_settings.sweep_older_than}
    if app_settings.sweep_interval is not None:
        parts["SWEEP_INTERVAL"] = app_settings.sweep_interval
    wait = sum(parts.values())
    if wait <= retention / 2:
        return []
    written = " + ".join(f"{key} {value:g}" for key, value in parts.items())
    return [
        checks.Warning(
            f"The outbox sweep may re-send a task {wait:g} s after its claim started ({written}), but the transport "
            f"remembers task names for {retention:g} s: a task sent just before a crash could then run twice.",
            hint="Sweep more often and with a smaller IM_TASK['SWEEP_OLDER_THAN'] (keep the sum under half the "
            "name retention), or give the queue a longer name_retention.",
            id="im_task.W006",
        )
    ]


@register()
def check_task_framework(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E104, W101: Django's task framework is there for the ``TASKS`` that use ``ImTaskBackend``, and checked.

    The backend's own checks (E101-E103) are run by the framework's system check.
    """
    configured = getattr(settings, "TASKS", None)
    if not isinstance(configured, dict):
        return []
    backend = "im_task_django.backends.ImTaskBackend"
    aliases = [
        alias for alias, params in configured.items() if isinstance(params, dict) and params.get("BACKEND") == backend
    ]
    if not aliases or importlib.util.find_spec("django.tasks") is not None:
        return []
    if importlib.util.find_spec("django_tasks") is None:
        return [
            checks.Error(
                f"TASKS[{aliases[0]!r}] uses ImTaskBackend, but Django's task framework is not installed.",
                hint="Use Django 6.0 or later (django.tasks), or pip install django-tasks and add 'django_tasks' to "
                "INSTALLED_APPS.",
                id="im_task.E104",
            )
        ]
    if apps.is_installed("django_tasks"):
        return []
    return [
        checks.Warning(
            f"TASKS[{aliases[0]!r}] uses ImTaskBackend on the django-tasks backport, but 'django_tasks' is not in "
            "INSTALLED_APPS: its system checks (ImTaskBackend's among them) and its task signal logging are off.",
            hint="Add 'django_tasks' to INSTALLED_APPS.",
            id="im_task.W101",
        )
    ]


def _name_retention() -> float | None:
    """Seconds the transport in use (or, before one is made, the one the settings ask for) remembers names."""
    transport: object = STATE.transport
    if transport is None:
        current = _core_settings()
        choice = current.transport if current else None
        if choice is None or choice == "local":
            return float(inspect.signature(LocalTransport).parameters["name_retention"].default)
        transport = choice
    retention = getattr(transport, "name_retention", None)
    if isinstance(retention, bool) or not isinstance(retention, (int, float)):
        return None
    return float(retention)


def _core_settings() -> Settings | None:
    """The core settings, or None when they do not resolve (which :func:`check_settings` reports)."""
    try:
        return config.get_settings()
    except ConfigurationError:
        return None


def _delivers_in_process() -> bool:
    """Whether the local queue in use (or, before one is made, the one the settings ask for) delivers here."""
    from im_task_django.wsgi import project_wsgi_application

    transport = STATE.transport
    if transport is None:
        current = _core_settings()
        choice = current.transport if current else None
        if choice is None or choice == "local":
            return local_target.get_local_target() is project_wsgi_application
        if not isinstance(choice, Transport):
            return False  # another name
        transport = choice
    if not isinstance(transport, LocalTransport):
        return False
    target = transport.target
    if target is None:
        return local_target.get_local_target() is project_wsgi_application
    return target is project_wsgi_application
