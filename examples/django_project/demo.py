"""The Django demo: the shared scenarios and a transactional one, started through the project's views.

Run it with ``python examples/run_demo.py django`` (or ``nox -s demo -- django``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from demo_kit import runner
from django_project.tasks import TRANSACTIONAL

__all__ = ["run"]

SETTINGS_MODULE = "django_project.settings"
#: Read by the settings: the project's database goes in the demo's data directory.
DATA_DIR_VARIABLE = "DJANGO_PROJECT_DEMO_DIR"


def run(timeout: float = 60.0) -> int:
    """Runs the demo.

    Django is set up once per process with one settings module; when this
    process already has Django set up (a test run, a second call), the demo
    runs in a fresh Python process instead.

    Args:
        timeout: Most seconds to wait for every expected outcome.

    Returns:
        0 when every scenario showed what was expected, 1 otherwise.
    """
    from django.conf import settings

    if settings.configured:
        return _run_in_new_process(timeout)
    return runner.run(
        _make_app, title="the Django demo project", timeout=timeout, extra=[TRANSACTIONAL], checks=[_outbox_is_empty]
    )


def _make_app(data_dir: Path) -> Any:
    os.environ[DATA_DIR_VARIABLE] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    import django
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    django.setup()
    call_command("migrate", verbosity=0)
    return get_wsgi_application()


def _outbox_is_empty() -> str | None:
    from im_task_django.models import OutboxTask

    left = OutboxTask.objects.filter(sent_at__isnull=True).count()  # rows marked sent wait for a sweep to delete them
    return f"{left} transactional task(s) left unsent in the outbox" if left else None


def _run_in_new_process(timeout: float) -> int:
    examples = str(Path(__file__).resolve().parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {examples!r}); from django_project.demo import run; sys.exit(run({timeout!r}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", DATA_DIR_VARIABLE)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout + 60, check=False
    )
    sys.stdout.write(done.stdout + done.stderr)
    return done.returncode
