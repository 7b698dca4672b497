"""System checks (``manage.py check``) for the im-task setup.

======================  ===================================================================
id                      problem
======================  ===================================================================
``im_task.E001``        ``IM_TASK`` is not a dict
``im_task.E002``        ``IM_TASK`` has an unknown key
``im_task.E003``        ``IM_TASK`` has an invalid value
``im_task.E004``        no secret while the environment is production
``im_task.E005``        the transport is unknown or cannot be imported
``im_task.E006``        the task route is not mounted in the URLconf
``im_task.E007``        ``IM_TASK["database"]`` is not in ``DATABASES``
``im_task.W001``        the local queue's in-process requests (``Host: localhost``) are not
                        in ``ALLOWED_HOSTS``
``im_task.W002``        ``SECURE_SSL_REDIRECT`` redirects task requests, which queues do not follow
``im_task.W003``        (``check --deploy``) no secret configured: a local one is generated
======================  ===================================================================
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Tags, register
from django.db import connections
from django.http.request import validate_host
from django.urls import Resolver404, resolve

from im_task import config, routing
from im_task.config import Settings
from im_task.errors import ConfigurationError
from im_task.transports.base import Transport
from im_task_django.conf import get_app_settings, get_settings_error

__all__ = [
    "check_database",
    "check_secret_deploy",
    "check_local_delivery",
    "check_route_mounted",
    "check_secret",
    "check_settings",
    "check_ssl_redirect",
    "check_transport",
]

BUILTIN_TRANSPORTS = ("local", "immediate", "recording")
PROBE = "im-task-check/probe"


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001-E003: ``IM_TASK`` is a dict of known keys with valid values."""
    error = get_settings_error()
    if error is not None:
        return [
            checks.Error(
                str(error),
                hint="Fix settings.IM_TASK; until then it is not applied. Its keys are in the im-task Django docs.",
                id=error.check_id,
            )
        ]
    try:
        config.get_settings()
    except ConfigurationError as exc:  # from an IM_TASK_* environment variable
        return [checks.Error(str(exc), hint="Fix or unset the IM_TASK_* environment variable.", id="im_task.E003")]
    return []


@register(Tags.security)
def check_secret(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E004: production needs a configured secret."""
    current = _core_settings()
    if current is None or current.secrets or not current.production:
        return []
    return [
        checks.Error(
            "im-task has no secret configured and the environment is production: tasks cannot be signed safely.",
            hint="Set IM_TASK['secret'] (or $IM_TASK_SECRET) to a random value of at least 16 bytes, the same "
            "in every process that enqueues or runs tasks.",
            id="im_task.E004",
        )
    ]


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
            hint="Set IM_TASK['secret'] (or $IM_TASK_SECRET) and IM_TASK['environment'] = 'production' when deploying.",
            id="im_task.W003",
        )
    ]


@register()
def check_transport(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E005: the transport is a ``Transport``, a built-in name, or an importable ``module:factory``."""
    current = _core_settings()
    choice = current.transport if current else None
    if choice is None or isinstance(choice, Transport) or choice in BUILTIN_TRANSPORTS:
        return []
    module_name, _, attr = choice.partition(":")
    problem = None
    if not attr:
        problem = "is neither a built-in name nor of the form 'package.module:factory'"
    else:
        try:
            getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            problem = f"cannot be imported ({exc})"
        except AttributeError:
            problem = f"names {attr!r}, which {module_name} does not define"
    if problem is None:
        return []
    return [
        checks.Error(
            f"The im-task transport {choice!r} {problem}.",
            hint=f"Use one of {', '.join(map(repr, BUILTIN_TRANSPORTS))}, a Transport instance, or "
            "'package.module:factory' naming a Transport or a callable that returns one.",
            id="im_task.E005",
        )
    ]


@register(Tags.urls)
def check_route_mounted(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E006: a request under the task route reaches the task view."""
    from im_task_django.views import task_view

    route = routing.get_taskroute()
    probe = f"{route}/{PROBE}"
    try:
        match = resolve(probe)
    except Resolver404:
        reached = "nothing"
    else:
        if match.func is task_view:
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
            f"IM_TASK['database'] is {alias!r}, which is not in settings.DATABASES.",
            hint=f"Use one of {', '.join(map(repr, connections))}.",
            id="im_task.E007",
        )
    ]


@register()
def check_local_delivery(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W001: the local queue's in-process requests pass ``ALLOWED_HOSTS``."""
    if not _delivers_in_process() or settings.DEBUG:
        return []  # with DEBUG, Django allows localhost when ALLOWED_HOSTS is empty
    if validate_host("localhost", settings.ALLOWED_HOSTS):
        return []
    return [
        checks.Warning(
            "The local im-task queue delivers tasks to this project in process with 'Host: localhost', "
            "which ALLOWED_HOSTS refuses (400), so those tasks would be retried forever.",
            hint="Add 'localhost' to ALLOWED_HOSTS, or configure another transport.",
            id="im_task.W001",
        )
    ]


@register(Tags.security)
def check_ssl_redirect(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W002: ``SECURE_SSL_REDIRECT`` does not redirect task requests."""
    if not getattr(settings, "SECURE_SSL_REDIRECT", False):
        return []
    path = f"{routing.get_taskroute()}/{PROBE}".lstrip("/")
    if any(re.search(pattern, path) for pattern in getattr(settings, "SECURE_REDIRECT_EXEMPT", [])):
        return []
    return [
        checks.Warning(
            "SECURE_SSL_REDIRECT redirects plain-HTTP task requests, and task queues do not follow redirects.",
            hint=f"Add r'^{routing.get_taskroute().lstrip('/')}/' to SECURE_REDIRECT_EXEMPT, unless every "
            "queue reaches this project over HTTPS.",
            id="im_task.W002",
        )
    ]


def _core_settings() -> Settings | None:
    """The core settings, or None when they do not resolve (which :func:`check_settings` reports)."""
    try:
        return config.get_settings()
    except ConfigurationError:
        return None


def _delivers_in_process() -> bool:
    current = _core_settings()
    transport = current.transport if current else None
    if transport is None or transport == "local":
        return get_app_settings().register_local_target
    return False
