"""A minimal Django project for im-task tests, reusable by other test suites.

Call :func:`setup` once per process before using Django: it puts this
directory's parent on ``sys.path``, points ``DJANGO_SETTINGS_MODULE`` at
``django_testproject.settings`` (a SQLite file in a temporary directory),
sets Django up and creates the tables. The app's transaction binder is
unregistered again (register ``im_task_django.transactions.binder`` around
tests that use ``transactional=True``). Serve the project with
``im_task.testing.serve_wsgi(django.core.wsgi.get_wsgi_application())``.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

_lock = threading.Lock()
_done: list[bool] = []


def setup() -> None:
    """Configures and sets up Django with this project, once per process."""
    with _lock:
        if _done:
            return
        parent = str(Path(__file__).resolve().parent.parent)
        if parent not in sys.path:
            sys.path.insert(0, parent)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_testproject.settings")
        import django
        from django.core.management import call_command

        django.setup()
        # The app registered its transaction binder; tests of other packages in this process expect none,
        # so it is left out here, and the Django adapter's tests register it around each test.
        from im_task.transactions import unregister_binder
        from im_task_django.transactions import binder

        unregister_binder(binder)
        for alias in ("default", "other"):
            call_command("migrate", database=alias, run_syncdb=True, verbosity=0)
        _done.append(True)
