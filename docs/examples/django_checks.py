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
        "SECRET": "a-long-random-secret-from-the-environment",
        "ENVIRONMENT": "production",
        "SERVICE_ACCOUNT_EMAIL": "tasks@my-project.iam.gserviceaccount.com",  # the tasks' OIDC tokens
        "AUDIENCE": "https://www.example.com",
        "DEFAULT_QUEUE": "background",
        "MAX_BODY_SIZE": 512 * 1024,
        "SWEEP_OLDER_THAN": 120,
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

with override_settings(IM_TASK={"SECRETT": "typo"}):
    [typo] = [m for m in run_checks() if m.id == "im_task.E002"]
    print(typo.msg)  # settings.IM_TASK: unknown key 'SECRETT' (did you mean 'SECRET'?); known keys: ...
with override_settings(IM_TASK={"secret": "a-long-random-secret-0123456789abcdef"}):
    [lower] = [m for m in run_checks() if m.id == "im_task.E002"]
    print(lower.msg)  # settings.IM_TASK: 'secret' must be written 'SECRET'.
with override_settings(IM_TASK_SECRET="a-long-random-secret"):  # a top-level setting, which im-task ignores
    [top_level] = [m for m in run_checks() if m.id == "im_task.E008"]
    print(top_level.hint)  # Move it into IM_TASK = {"SECRET": ...}.
# [end checks]

assert "did you mean 'SECRET'?" in typo.msg
assert lower.msg == "settings.IM_TASK: 'secret' must be written 'SECRET'."
assert top_level.hint == 'Move it into IM_TASK = {"SECRET": ...}.'

urlpatterns = [path("", include("im_task_django.urls"))]
clear_url_caches()
assert run_checks() == []
