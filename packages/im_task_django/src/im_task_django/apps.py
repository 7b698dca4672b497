"""The Django app: wires im-task into the project when it is ready."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["ImTaskConfig"]


class ImTaskConfig(AppConfig):
    """``"im_task_django"`` in ``INSTALLED_APPS``.

    When ready it applies ``settings.IM_TASK`` (and re-applies it whenever
    it changes), registers the project's WSGI application as the local
    queue's in-process target, registers the transaction binder for
    ``transactional=True``, and installs the system checks.
    """

    name = "im_task_django"
    verbose_name = "im-task"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Applies the settings and registers the binder and the checks."""
        from im_task.transactions import register_binder
        from im_task_django import checks  # noqa: F401 - registers the system checks
        from im_task_django.conf import apply_settings, connect_signals
        from im_task_django.transactions import binder

        connect_signals()
        apply_settings()
        register_binder(binder)
