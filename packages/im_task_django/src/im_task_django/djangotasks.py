"""Django's task framework from where it is installed: ``django.tasks`` (Django 6+) or the ``django-tasks`` backport.

The two spell a few names differently (``InvalidTask`` in Django,
``InvalidTaskError`` in the backport); this module gives the backend one
set of names. :data:`SOURCE` says which was found. Importing it without
either raises ``ImportError`` saying what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__all__ = [
    "SOURCE",
    "BaseTaskBackend",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "available",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]

#: Where the framework comes from, best first.
CANDIDATES = ("django.tasks", "django_tasks")
#: What to install when neither is there.
MISSING = (
    "Django's task framework is not installed: it is django.tasks in Django 6.0 and later (Python 3.12+); "
    "on older Django, pip install django-tasks (the backport) and add 'django_tasks' to INSTALLED_APPS."
)


def available() -> str | None:
    """The package that provides Django's task framework here (``"django.tasks"`` or ``"django_tasks"``), or None."""
    for name in CANDIDATES:
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ModuleNotFoundError:  # "django" itself is missing
            continue
    return None


def _load() -> tuple[str, Any, Any, Any, Any, Any]:
    source = available()
    if source is None:
        raise ImportError(MISSING)
    package = importlib.import_module(source)
    return (
        source,
        package,
        importlib.import_module(f"{source}.base"),
        importlib.import_module(f"{source}.backends.base"),
        importlib.import_module(f"{source}.exceptions"),
        importlib.import_module(f"{source}.signals"),
    )


SOURCE, _package, _base, _backends, _exceptions, _signals = _load()

# Typed as Any: django-stubs does not describe django.tasks, and the backport is optional.
BaseTaskBackend: Any = _backends.BaseTaskBackend
Task: Any = _base.Task
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
InvalidTask: Any = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
InvalidTaskBackend: Any = getattr(_exceptions, "InvalidTaskBackend", None) or _exceptions.InvalidTaskBackendError
TaskResultDoesNotExist: Any = _exceptions.TaskResultDoesNotExist
task_backends: Any = _package.task_backends
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished

#: Django's JSON normaliser of task arguments and return values (``TaskResult`` applies it to the arguments).
normalize_json: Any = importlib.import_module(
    "django.utils.json" if SOURCE == "django.tasks" else "django_tasks.utils"
).normalize_json
