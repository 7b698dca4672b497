"""Settings of the demo project: the im-task app, SQLite, and an IM_TASK dict."""

from __future__ import annotations

import os
from pathlib import Path

#: Where the database and the local queue live; the demo points it at a temporary directory.
DATA_DIR = Path(os.environ.get("DJANGO_PROJECT_DEMO_DIR") or Path(__file__).resolve().parent / ".data")

SECRET_KEY = "django-insecure-im-task-demo-only"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = ["im_task_django", "django_project"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "django_project.urls"
WSGI_APPLICATION = "django_project.wsgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA_DIR / "db.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Upper-case keys, as in DATABASES. No secret: in development im-task makes one in DATA_DIR. In production
# set "SECRET" and "ENVIRONMENT": "production" (manage.py check --deploy warns about it).
IM_TASK = {
    "DATA_DIR": str(DATA_DIR / "im_task"),
}
