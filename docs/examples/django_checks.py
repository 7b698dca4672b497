"""Django system checks of im-task: settings.IM_TASK and the URLconf checked by ``manage.py check``.

A whole Django project in one file, so the documentation build can run it.
It exits with status 0 only if the checks report what this script expects.
"""

# Django is configured in this file, before the imports that need it.
# ruff: noqa: E402

import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["im_task_django"],
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["www.example.com", "localhost"],  # localhost: the local queue's in-process requests
    # [start settings]
    IM_TASK={
        "secret": "a-long-random-secret-from-the-environment",
        "environment": "production",
        "default_queue": "background",
        "max_body_size": 512 * 1024,
        "sweep_older_than": 120,
    },
    # [end settings]
)
django.setup()

from django.urls import clear_url_caches, include, path

urlpatterns = []  # the task endpoint is not mounted: im_task.E006

# [start checks]
from django.core.checks import run_checks
from django.test import override_settings

messages = run_checks()
for message in messages:
    print(message)  # im_task.E006: Tasks are POSTed under /_ah/task, but ... reaches nothing in the URLconf.
assert [m.id for m in messages] == ["im_task.E006"]

with override_settings(IM_TASK={"secrett": "typo"}):
    assert [m.id for m in run_checks() if m.id == "im_task.E002"] == ["im_task.E002"]  # unknown key
# [end checks]

urlpatterns = [path("", include("im_task_django.urls"))]
clear_url_caches()
assert run_checks() == []
