"""The transport in force, and setting an application up: where settings and transports meet.

:mod:`im_task.config` resolves settings and imports no transport; the
transports import neither the settings nor the endpoint. This module joins
them: it makes the transport a setting names (with
:func:`~im_task.transports.factory.make_transport`) and owns what it made, so
that a settings change closes it.

Example:
    >>> from im_task.runtime import get_transport
    >>> get_transport()  # doctest: +SKIP
    LocalTransport('.im_task/queue.sqlite3', target=None)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from im_task import caller, config, executor
from im_task.local_target import register_local_target
from im_task.routing import get_taskroute, set_taskroute
from im_task.state import STATE
from im_task.stores.deadletters import dead_letter_store_name, get_dead_letter_store
from im_task.transports.base import Transport
from im_task.transports.factory import make_transport

__all__ = ["check_configuration", "get_transport", "set_up_framework"]

logger = logging.getLogger("im_task")
WSGIApp = Callable[..., Any]


def get_transport() -> Transport:
    """The transport in force, made from the settings on first use.

    Raises:
        ConfigurationError: The transport setting cannot be made into a transport.
    """
    with STATE.lock:
        transport = STATE.transport
        if transport is None:
            settings = config.get_settings()
            choice = config.transport_choice(settings)  # Cloud Tasks by default on App Engine standard
            local = choice is None or choice == "local"
            data_dir = settings.local_data_dir() if local else settings.data_dir
            dead_letters = get_dead_letter_store() if local else None
            transport = make_transport(
                choice, data_dir=data_dir, cloud=_cloud_settings(settings), dead_letters=dead_letters
            )
            STATE.transport = transport
            STATE.owns_transport = not isinstance(choice, Transport)
            STATE.transport_made_with = settings.transport_shape()
        result: Transport = transport
        return result


def _cloud_settings(settings: config.Settings) -> dict[str, Any]:
    """The settings the Cloud Tasks transport is made with (``transport="cloudtasks"`` or App Engine's default)."""
    return {
        "project": settings.project,
        "location": settings.location,
        "base_url": settings.base_url,
        "service_account_email": settings.service_account_email,
        "audience": settings.audience,
        "background_service": settings.background_service,
    }


def check_configuration() -> None:
    """Refuses unsafe or broken configuration; adapters call it at start-up.

    Unknown ``IM_TASK_*`` environment variables (typos, most likely) are
    logged as warnings, and so is the ``front_authenticated`` opt-out of the
    caller check in production (see :mod:`im_task.caller`).

    Raises:
        ConfigurationError: Explaining what to set: no secret in production,
            production that would accept HTTP-target tasks without an OIDC
            check, an incomplete OIDC configuration, ``accept_legacy_payloads`` outside App Engine
            production, a transport or a dead-letter store that cannot be made.
    """
    for line in config.unknown_environment_variables():
        logger.warning("%s", line)
    settings = config.get_settings()
    if config.on_google_cloud() and not settings.production:
        logger.warning(
            "im-task runs on Google Cloud with environment='development': the production checks are off (the "
            "caller policy, the required shared secret, the sweep route's cron check). Use this only for a "
            "private test deployment; unset IM_TASK_ENV (or set it to 'production') elsewhere."
        )
    config.get_keyring()
    for line in caller.check_configuration(config.get_settings()):
        logger.warning("%s", line)
    for line in executor.check_legacy_payloads(config.get_settings()):
        logger.warning("%s", line)
    get_transport()
    if dead_letter_store_name(settings) not in ("local", "none"):  # refused now, not at the first dead task
        get_dead_letter_store()


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
        values: Settings by their :func:`~im_task.configure` names.
        source: Where they came from, for error messages.
        local_target: The WSGI application to register, or None to register none.
        route: The task route to set (see :func:`~im_task.set_taskroute`), or None to keep it.

    Raises:
        ConfigurationError: Explaining what to set.
    """
    with STATE.lock:
        framework, target, taskroute = dict(STATE.framework), STATE.local_target, get_taskroute()
    try:
        config.set_framework_settings(values, source=source)
        if route is not None:
            set_taskroute(route)
        if local_target is not None:
            register_local_target(local_target)
        check_configuration()
    except Exception:
        config.set_framework_settings(framework, source=source)
        register_local_target(target)
        set_taskroute(taskroute)
        raise
