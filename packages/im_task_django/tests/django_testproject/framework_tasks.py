"""Tasks of the test project declared with Django's own ``@task`` (run by im-task through ImTaskBackend).

Importing this module needs Django's task framework (``django.tasks`` or the ``django-tasks`` backport).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from im_task import SingularTaskFailure
from im_task_django.djangotasks import SOURCE

if SOURCE == "django.tasks":
    from django.tasks import task  # type: ignore[import-not-found,unused-ignore]
else:
    from django_tasks import task  # type: ignore[import-not-found,no-redef,unused-ignore]

RESULTS: list[Any] = []
_lock = threading.Lock()


def _record(value: Any) -> None:
    with _lock:
        RESULTS.append(value)


@task
def add(a: int, b: int) -> int:
    _record(("add", a, b))
    return a + b


@task(queue_name="emails")
def send_email(to: str, *, subject: str) -> dict[str, str]:
    _record(("email", to, subject))
    return {"to": to, "subject": subject}


@task
def explode(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def flaky(context: Any, failures: int) -> dict[str, Any]:
    """Asks im-task for a retry ``failures`` times, then returns what its context said."""
    _record(("flaky", context.attempt))
    if context.attempt <= failures:
        raise SingularTaskFailure(f"attempt {context.attempt}: try again")
    return {"attempt": context.attempt, "result_id": context.task_result.id}


@task
async def async_double(value: int) -> int:
    await asyncio.sleep(0.01)
    _record(("async", value))
    return value * 2


@task
def unserialisable() -> object:
    return object()


def _plain() -> None:
    _record("plain")


#: A task whose module path (``...framework_tasks._plain``) names the plain function, not the task.
misnamed = task(_plain)


@task
def fails_until_healed(marker: str) -> str:
    """Fails (a FAILED result: not retried) until the file ``marker`` exists, then returns what it holds."""
    _record(("heal", marker))
    try:
        with open(marker, encoding="utf-8") as file:
            return file.read()
    except FileNotFoundError:
        raise ValueError(f"{marker} is missing") from None
