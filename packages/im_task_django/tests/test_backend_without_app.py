"""ImTaskBackend in a project without ``im_task_django`` in INSTALLED_APPS: check E103 and a clear error, no crash.

Django is set up once per process, so the project runs in a real subprocess of its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from im_task_django.djangotasks import available

if available() is None:
    pytest.skip(
        "Django's task framework is not installed (Django 6+, or pip install django-tasks)", allow_module_level=True
    )

SETTINGS = """
SECRET_KEY = "not-a-secret-but-long-enough-for-django-0123456789"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
if FRAMEWORK != "django.tasks":
    INSTALLED_APPS.append(FRAMEWORK)
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TASKS = {"default": {"BACKEND": "im_task_django.backends.ImTaskBackend"}}
USE_TZ = True
"""

SCRIPT = """
import django
django.setup()
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from im_task_django.djangotasks import task_backends
try:
    call_command("check")
except SystemCheckError as exc:
    print("CHECK", exc)
try:
    task_backends["default"].get_result("00000000-0000-0000-0000-000000000000")
except ImproperlyConfigured as exc:
    print("ERROR", exc)
"""


def test_the_check_reports_e103_and_the_backend_says_the_same(tmp_path: Path) -> None:
    (tmp_path / "noapp_settings.py").write_text(f"FRAMEWORK = {available()!r}\n" + textwrap.dedent(SETTINGS))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,
        env={"DJANGO_SETTINGS_MODULE": "noapp_settings", "PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "RuntimeError" not in done.stderr
    assert (
        "(im_task.E103) TASKS['default'] uses ImTaskBackend, but 'im_task_django' is not in INSTALLED_APPS"
        in done.stdout
    )
    assert "ERROR TASKS['default'] uses ImTaskBackend" in done.stdout
    assert "Add 'im_task_django' to INSTALLED_APPS" in done.stdout
