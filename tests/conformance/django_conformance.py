"""The Django adapter under test: the ``im_task_django`` test project, with ``IM_TASK`` overridden.

Django is configured once per process, so every test shares the project of
``packages/im_task_django/tests/django_testproject`` (the Django adapter's own
tests use it too) and changes its ``IM_TASK`` setting with
``override_settings``, as a Django test would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


@contextmanager
def project(route: str, settings: Mapping[str, Any]) -> Iterator[Callable[..., Any]]:
    """Yields the test project's WSGI application serving tasks at ``route`` with ``settings``."""
    import django_testproject  # importable by name: the root conftest.py puts its directory on sys.path

    django_testproject.setup()

    from django.conf import settings as django_settings
    from django.core.wsgi import get_wsgi_application
    from django.test.utils import override_settings

    written = {name.upper(): value for name, value in settings.items()}  # IM_TASK's keys are upper case
    im_task = {**getattr(django_settings, "IM_TASK", {}), **written, "ROUTE": route}
    with override_settings(IM_TASK=im_task):
        yield get_wsgi_application()
