"""A backend for Django's task framework that sends tasks through im-task: :class:`ImTaskBackend`.

.. code-block:: python

    TASKS = {
        "default": {
            "BACKEND": "im_task_django.backends.ImTaskBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"ENQUEUE_ON_COMMIT": True, "KEEP_RESULTS": True},
        }
    }

Tasks declared with Django's ``@task`` are enqueued through im-task's
transport in force (the local queue in development, Cloud Tasks in
production) as calls of :func:`im_task_django.runner.run_django_task`, and
run by im-task's task endpoint, with its signing, caller checks and request
contract. Works with ``django.tasks`` (Django 6+) and with the
``django-tasks`` backport on older Django.

==========================  =========  =========================================================
``OPTIONS`` key             default    meaning
==========================  =========  =========================================================
``ENQUEUE_ON_COMMIT``       ``True``   inside ``transaction.atomic()`` (on ``IM_TASK["DATABASE"]``),
                                       send the task through the outbox: if and only if the
                                       transaction commits, and never lost
``KEEP_RESULTS``            ``True``   keep each ``TaskResult`` in the ``im_task_task_result`` table
                                       (``get_result()``, the admin); off: ``supports_get_result``
                                       is False and nothing is written
``TASK_OPTIONS``            ``{}``     im-task task options for every task: ``retry_options``,
                                       ``target``, ``dispatch_deadline``, ``headers``
==========================  =========  =========================================================

The backend needs ``im_task_django`` in ``INSTALLED_APPS`` (its endpoint
runs the tasks, its table keeps the results): without it the system check
``im_task.E103`` says so, and ``enqueue()`` and ``get_result()`` raise
``ImproperlyConfigured`` with the same words. Importing this module loads
no model, so the check can run.

``QUEUES`` are im-task queue names (the Django task's ``queue_name`` is the
queue it is sent to), so each must be one im-task accepts: 1 to 100 of
letters, digits and hyphens. ``supports_priority`` is False: Cloud Tasks
runs a queue's tasks without priorities, so a priority could not be kept
(give urgent tasks a queue of their own instead).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from im_task.errors import ConfigurationError, EnqueueError
from im_task.names import did_you_mean
from im_task.options import TaskOptions
from im_task_django.conf import get_app_settings
from im_task_django.djangotasks import (
    BaseTaskBackend,
    InvalidTask,
    InvalidTaskBackend,
    TaskResult,
    TaskResultStatus,
    task_enqueued,
)
from im_task_django.transactions import DjangoTransactionBinder

# The models, the results and the runner (which import the models) are imported when first used, not here:
# Django imports a backend before it checks the project, and models of an app not installed cannot load.

__all__ = ["OPTION_NAMES", "TASK_OPTION_NAMES", "BackendOptions", "ImTaskBackend"]

logger = logging.getLogger("im_task.django")

#: The keys ``OPTIONS`` may hold.
OPTION_NAMES = ("ENQUEUE_ON_COMMIT", "KEEP_RESULTS", "TASK_OPTIONS")
#: The im-task task options ``OPTIONS["TASK_OPTIONS"]`` may set; the backend sets the others itself.
TASK_OPTION_NAMES = ("retry_options", "target", "dispatch_deadline", "headers")
#: The version of the description the runner takes (:data:`im_task_django.runner.SPEC_VERSION`).
SPEC_VERSION = 1


@dataclass(frozen=True)
class BackendOptions:
    """A backend's ``OPTIONS``, read and checked.

    Attributes:
        enqueue_on_commit: Inside ``transaction.atomic()``, send tasks through the outbox after commit.
        keep_results: Keep results in the ``im_task_task_result`` table.
        task_options: im-task task options for every task (``TASK_OPTIONS``).
        problems: What is wrong with the ``OPTIONS`` and ``QUEUES`` (empty when all is well), as
            ``(check id, message)``; the system checks report them and the backend refuses tasks until fixed.
    """

    enqueue_on_commit: bool = True
    keep_results: bool = True
    task_options: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[tuple[str, str], ...] = ()

    @classmethod
    def read(cls, alias: str, options: Any, queues: Iterable[Any]) -> BackendOptions:
        """Reads ``TASKS[alias]["OPTIONS"]`` and checks ``TASKS[alias]["QUEUES"]``, collecting what is wrong."""
        where = f"TASKS[{alias!r}]"
        problems: list[tuple[str, str]] = []
        if not isinstance(options, Mapping):
            problems.append(("im_task.E101", f'{where}["OPTIONS"] must be a dict, not {type(options).__name__}.'))
            options = {}
        for key in options:
            if key not in OPTION_NAMES:
                problems.append(
                    (
                        "im_task.E101",
                        f'{where}["OPTIONS"] has no key {key!r}{did_you_mean(str(key), OPTION_NAMES)}; '
                        f"its keys are {', '.join(OPTION_NAMES)}.",
                    )
                )
        flags = {}
        for key in ("ENQUEUE_ON_COMMIT", "KEEP_RESULTS"):
            value = options.get(key, True)
            if not isinstance(value, bool):
                problems.append(("im_task.E101", f'{where}["OPTIONS"]["{key}"] must be True or False, not {value!r}.'))
                value = True
            flags[key] = value
        task_options = options.get("TASK_OPTIONS", {})
        if not isinstance(task_options, Mapping):
            kind = type(task_options).__name__
            problems.append(("im_task.E101", f'{where}["OPTIONS"]["TASK_OPTIONS"] must be a dict, not {kind}.'))
            task_options = {}
        refused = [name for name in task_options if name not in TASK_OPTION_NAMES]
        if refused:
            problems.append(
                (
                    "im_task.E101",
                    f'{where}["OPTIONS"]["TASK_OPTIONS"] may set {", ".join(TASK_OPTION_NAMES)}, not '
                    f"{', '.join(map(repr, refused))}: the backend sets the queue, the schedule (run_after) and "
                    "transactional (ENQUEUE_ON_COMMIT) itself.",
                )
            )
            task_options = {k: v for k, v in task_options.items() if k in TASK_OPTION_NAMES}
        try:
            TaskOptions.from_kwargs(dict(task_options))
        except ConfigurationError as exc:
            problems.append(("im_task.E101", f'{where}["OPTIONS"]["TASK_OPTIONS"] is invalid: {exc}'))
            task_options = {}
        for queue in queues:
            try:
                TaskOptions.from_kwargs({"queue": queue})
            except ConfigurationError as exc:
                problems.append(("im_task.E102", f'{where}["QUEUES"]: {exc} Django queue names are im-task queues.'))
        return cls(flags["ENQUEUE_ON_COMMIT"], flags["KEEP_RESULTS"], dict(task_options), tuple(problems))


class ImTaskBackend(BaseTaskBackend):  # type: ignore[misc]
    """Django's task backend on im-task's queues; see the module documentation for ``OPTIONS``.

    Args:
        alias: The backend's alias in ``settings.TASKS``.
        params: Its settings: ``QUEUES`` and ``OPTIONS``.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.settings = BackendOptions.read(alias, self.options, self.queues)
        self.supports_get_result = self.settings.keep_results

    def validate_task(self, task: Any) -> None:
        """Django's checks, and a queue name im-task accepts.

        Raises:
            InvalidTask: The task cannot run on this backend.
            InvalidTaskBackend: The backend's settings are invalid (see :meth:`check`).
            ImproperlyConfigured: ``im_task_django`` is not in ``INSTALLED_APPS`` (see :meth:`check`).
        """
        self._refuse_if_misconfigured()
        super().validate_task(task)
        try:
            TaskOptions.from_kwargs({"queue": task.queue_name})
        except ConfigurationError as exc:
            raise InvalidTask(str(exc)) from None

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Sends a call of the task through im-task and returns its ``TaskResult`` (``READY``).

        Inside ``transaction.atomic()`` on ``IM_TASK["DATABASE"]`` with
        ``ENQUEUE_ON_COMMIT``, the task (and its result row) is written in
        the transaction and sent after the commit; ``task_enqueued`` is sent
        then too. Otherwise the task is sent now.

        Raises:
            InvalidTask: The task cannot run here, or its function cannot be found again by its import path.
            TypeError: An argument is not JSON (Django's tasks take JSON arguments only).
            EnqueueError: The queue refused the task (nothing is kept).
        """
        self.validate_task(task)
        _check_findable(task)
        from im_task_django.results import record_from_result
        from im_task_django.runner import run_django_task

        result = _new_result(task, args, kwargs, self.alias)
        using = get_app_settings().database
        on_commit = self.settings.enqueue_on_commit and DjangoTransactionBinder(using).in_transaction()
        runner = run_django_task.using(
            **self.settings.task_options,
            queue=task.queue_name,
            eta=_as_aware(task.run_after),
            transactional=on_commit,
            logname=f"django/{task.module_path}",
        )
        if self.settings.keep_results:
            record_from_result(result).save(using=using, force_insert=True)
        try:
            runner(_spec(result, self.settings.keep_results))
        except (EnqueueError, ConfigurationError):
            if self.settings.keep_results:
                _forget(result.id, using)
            raise
        if on_commit:
            transaction.on_commit(lambda: task_enqueued.send(type(self), task_result=result), using=using)
        else:
            task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        """The task's ``TaskResult``, as last recorded.

        Raises:
            TaskResultDoesNotExist: No such result (never enqueued, rolled back, or deleted).
            NotImplementedError: ``KEEP_RESULTS`` is off.
            ImproperlyConfigured: ``im_task_django`` is not in ``INSTALLED_APPS``.
        """
        self._refuse_if_not_installed()
        from im_task_django.results import load_record, result_from_record

        if not self.settings.keep_results:
            raise NotImplementedError(
                f'TASKS[{self.alias!r}] keeps no results (OPTIONS["KEEP_RESULTS"] is False); set it to True.'
            )
        return result_from_record(load_record(result_id))

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        """E101 (``OPTIONS``), E102 (``QUEUES``), E103 (the app is not installed)."""
        for check_id, message in self.settings.problems:
            yield checks.Error(message, hint="See the im-task Django docs for the backend's OPTIONS.", id=check_id)
        if not apps.is_installed("im_task_django"):
            yield checks.Error(self._not_installed(), hint=_NOT_INSTALLED_HINT, id="im_task.E103")

    def _not_installed(self) -> str:
        return (
            f"TASKS[{self.alias!r}] uses ImTaskBackend, but 'im_task_django' is not in INSTALLED_APPS: no "
            "endpoint runs its tasks and no table keeps their results."
        )

    def _refuse_if_not_installed(self) -> None:
        if not apps.is_installed("im_task_django"):
            raise ImproperlyConfigured(f"{self._not_installed()} {_NOT_INSTALLED_HINT} (im_task.E103)")

    def _refuse_if_misconfigured(self) -> None:
        self._refuse_if_not_installed()
        if self.settings.problems:
            raise InvalidTaskBackend(" ".join(message for _, message in self.settings.problems))

    def __repr__(self) -> str:
        return f"ImTaskBackend(alias={self.alias!r})"


_NOT_INSTALLED_HINT = "Add 'im_task_django' to INSTALLED_APPS, include('im_task_django.urls') and migrate."


def _check_findable(task: Any) -> None:
    """Refuses a task whose import path does not lead back to it: the endpoint finds tasks by that path."""
    try:
        found = import_string(task.module_path)
    except ImportError:
        found = None
    if getattr(found, "func", None) is not task.func:
        raise InvalidTask(
            f"{task.module_path} does not lead back to this task: the im-task endpoint imports Django tasks by "
            "their module path, so decorate a module-level function with @task and keep its name."
        )


def _new_result(task: Any, args: Any, kwargs: Any, alias: str) -> Any:
    try:
        return TaskResult(
            task=task,
            id=str(uuid.uuid4()),
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=alias,
            errors=[],
            worker_ids=[],
        )
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"Cannot enqueue {task.module_path}: Django tasks take JSON arguments (str, int, float, bool, None, "
            f"lists and dicts of them), and {exc}. Pass ids rather than objects, or use im-task's @task, which "
            "takes any picklable argument."
        ) from None


def _spec(result: Any, keep_results: bool) -> dict[str, Any]:
    task = result.task
    return {
        "version": SPEC_VERSION,
        "backend": result.backend,
        "task": task.module_path,
        "id": result.id,
        "queue_name": task.queue_name,
        "priority": task.priority,
        "takes_context": task.takes_context,
        "run_after": task.run_after.isoformat() if task.run_after else None,
        "enqueued_at": result.enqueued_at.isoformat(),
        "args": result.args,
        "kwargs": result.kwargs,
        "results": keep_results,
    }


def _as_aware(moment: dt.datetime | None) -> dt.datetime | None:
    """``run_after`` as im-task's ``eta``: a naive time (``USE_TZ = False``) is in ``TIME_ZONE``."""
    if moment is None or timezone.is_aware(moment):
        return moment
    return timezone.make_aware(moment, timezone.get_default_timezone() if not settings.USE_TZ else dt.timezone.utc)


def _forget(result_id: str, using: str) -> None:
    """Deletes the row of a task the queue refused, so that no result waits for a task that was never sent."""
    from im_task_django.models import TaskResultRecord

    try:
        TaskResultRecord.objects.using(using).filter(pk=result_id).delete()
    except DatabaseError:
        logger.warning("Could not delete the result %s of a task that was not sent.", result_id, exc_info=True)
