"""The Django app: wires im-task into the project when it is ready."""

from __future__ import annotations

import logging
from types import ModuleType

from django.apps import AppConfig

__all__ = ["ImTaskConfig"]

logger = logging.getLogger("im_task_django")


class ImTaskConfig(AppConfig):
    """``"im_task_django"`` in ``INSTALLED_APPS``.

    When Django creates it, it sets the task route of ``IM_TASK["ROUTE"]``,
    before any app's models (and the tasks they define) are imported. When
    ready it applies the rest of ``settings.IM_TASK``, refusing an invalid
    or unsafe one with ``ImproperlyConfigured`` (and re-applies it whenever
    it changes), registers the project's WSGI application as the local
    queue's in-process target, registers the transaction binder for
    ``transactional=True``, and installs the system checks. When the project
    serves its first request, the transport is made, so the local queue
    resumes tasks left from before a restart (management commands such as
    ``migrate`` do not start it).
    """

    name = "im_task_django"
    verbose_name = "im-task"
    default_auto_field = "django.db.models.BigAutoField"

    def __init__(self, app_name: str, app_module: ModuleType | None) -> None:
        """Creates the app config and sets the task route, before any app's models are imported."""
        super().__init__(app_name, app_module)
        from im_task_django.conf import apply_route_setting

        apply_route_setting()

    def ready(self) -> None:
        """Applies the settings and registers the binder and the checks.

        Raises:
            django.core.exceptions.ImproperlyConfigured: ``IM_TASK`` is
                invalid, or unsafe (production without a secret).
        """
        from django.core.signals import request_started

        from im_task.transactions import register_binder
        from im_task_django import checks  # noqa: F401 - registers the system checks
        from im_task_django.conf import apply_settings_at_startup, connect_signals
        from im_task_django.transactions import binder

        connect_signals()
        apply_settings_at_startup()
        register_binder(binder)
        request_started.connect(_start_transport, dispatch_uid="im_task_django.start_transport")


def _start_transport(sender: object, **kwargs: object) -> None:
    """Makes the transport once the project serves requests (a local queue then resumes its tasks)."""
    from django.core.signals import request_started

    from im_task.errors import ConfigurationError
    from im_task.runtime import get_transport

    request_started.disconnect(dispatch_uid="im_task_django.start_transport")
    try:
        get_transport()
    except ConfigurationError:
        logger.exception("im-task is misconfigured; run `manage.py check` for the details.")
