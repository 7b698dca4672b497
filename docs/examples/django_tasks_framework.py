"""Django's own task API (``@task``, ``enqueue``, results) on im-task's queues, through ImTaskBackend.

A whole Django project in one file, served over HTTP on 127.0.0.1 with the
local queue delivering to it, so the documentation build can run it. It
uses ``django.tasks`` on Django 6 and the ``django-tasks`` backport before.
It exits with status 0 only if every assertion holds.
"""

# Django is configured in this file, before the imports that need it.
# ruff: noqa: E402

import importlib.util

import django
from django.conf import settings

BACKPORT = importlib.util.find_spec("django.tasks") is None  # Django < 6: the django-tasks backport
# [start settings]
settings.configure(
    INSTALLED_APPS=["im_task_django", *(["django_tasks"] if BACKPORT else [])],  # the backport is an app
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}},
    ROOT_URLCONF=__name__,  # urlpatterns below: include("im_task_django.urls")
    USE_TZ=True,
    ALLOWED_HOSTS=["127.0.0.1"],
    IM_TASK={"SECRET": "a-secret-for-this-example-0123456789abcdef", "DATA_DIR": "im_task_data"},
    TASKS={
        "default": {
            "BACKEND": "im_task_django.backends.ImTaskBackend",
            "QUEUES": ["default", "emails"],  # im-task queue names
            "OPTIONS": {"ENQUEUE_ON_COMMIT": True, "KEEP_RESULTS": True},
        }
    },
)
# [end settings]
django.setup()

from django.core.management import call_command
from django.urls import include, path

urlpatterns = [path("", include("im_task_django.urls"))]
call_command("migrate", verbosity=0)  # creates im_task_task_result, where results are kept

if BACKPORT:
    from django_tasks import TaskResultStatus, task
else:
    from django.tasks import TaskResultStatus, task

# [start task]
from django.db import transaction


@task(queue_name="emails")
def send_welcome(address, name):
    print(f"to {address}: welcome, {name}")
    return {"sent_to": address}


@task(takes_context=True)
def count_attempts(context):
    return context.attempt  # 1, then 2... for each attempt the queue makes


def sign_up(address, name):
    with transaction.atomic():
        # ... save the user ...
        return send_welcome.enqueue(address, name)  # sent if and only if the transaction commits


# [end task]

from django.core.wsgi import get_wsgi_application

from im_task import configure
from im_task.testing import serve_wsgi
from im_task.transports import LocalTransport

with serve_wsgi(get_wsgi_application()) as url, LocalTransport("queue.sqlite3", target=url) as queue:
    configure(transport=queue)  # delivers over HTTP, as Cloud Tasks would
    # [start results]
    result = sign_up("ada@example.com", "Ada")
    print(result.status)  # READY: enqueued, not run yet
    queue.join(timeout=30)  # (this example waits for the local queue)
    result.refresh()  # or send_welcome.get_result(result.id), in any process
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"sent_to": "ada@example.com"}
    # [end results]
    attempts = count_attempts.enqueue()
    queue.join(timeout=30)
    assert count_attempts.get_result(attempts.id).return_value == 1
