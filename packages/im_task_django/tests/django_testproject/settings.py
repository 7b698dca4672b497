"""Settings of the im-task test project: the app, a task route, SQLite in a temporary directory."""

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

# One directory per test session; child processes (crash tests) inherit it through the environment.
if "DJANGO_TESTPROJECT_DIR" in os.environ:
    _TMP = Path(os.environ["DJANGO_TESTPROJECT_DIR"])
else:
    _TMP = Path(tempfile.mkdtemp(prefix="im-task-django-tests-"))
    os.environ["DJANGO_TESTPROJECT_DIR"] = str(_TMP)
    atexit.register(shutil.rmtree, _TMP, ignore_errors=True)

SECRET_KEY = "im-task-django-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
USE_TZ = True
INSTALLED_APPS = [
    "im_task_django",
    "django_testproject",
    # the admin, for the outbox and dead-letter admin tests
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "django_testproject.urls"
WSGI_APPLICATION = "django_testproject.wsgi.application"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(_TMP / "default.sqlite3")},
    "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(_TMP / "other.sqlite3")},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IM_TASK = {"ENVIRONMENT": "development", "DATA_DIR": str(_TMP / "im_task")}

# Django's task framework on im-task (django.tasks in Django 6; the django-tasks backport, an app, before).
TASKS = {"default": {"BACKEND": "im_task_django.backends.ImTaskBackend", "QUEUES": ["default", "emails"]}}
if importlib.util.find_spec("django.tasks") is None and importlib.util.find_spec("django_tasks") is not None:
    INSTALLED_APPS.append("django_tasks")
