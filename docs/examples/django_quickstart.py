"""Django quickstart: the app, the URLs, a task, and the local queue delivering to the project with no configuration.

A whole Django project in one file, so the documentation build can run it.
It runs in an empty directory: the local queue keeps its tasks in
``./.im_task/queue.sqlite3`` and the development secret in ``./.im_task/secret``.
It exits with status 0 only if the task ran.
"""

# Django is configured in this file, before the imports that need it.
# ruff: noqa: E402

import django
from django.conf import settings

settings.configure(
    DEBUG=True,
    ALLOWED_HOSTS=["testserver", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
    # [start settings]
    INSTALLED_APPS=[
        # ...
        "im_task_django",
    ],
    # [end settings]
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}},
)
django.setup()

# [start quickstart]
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_POST

from im_task import task

welcomed = []


@task
def send_welcome(user):
    welcomed.append(user)  # runs later, in a POST to /_ah/task/__main__/send_welcome


@require_POST
def signup(request, user):
    send_welcome(user)  # enqueued; returns at once
    return HttpResponse("Welcome mail queued.", status=202)


urlpatterns = [
    path("", include("im_task_django.urls")),  # the task endpoint, at /_ah/task/...
    path("signup/<str:user>", signup),
]
# [end quickstart]

from django.test import Client

from im_task.runtime import get_transport

response = Client().post("/signup/ada")
print(response.status_code, response.content.decode())
assert response.status_code == 202

queue = get_transport()  # the embedded local queue, made on first use
assert queue.join(timeout=30)  # wait until nothing is due or running
print("welcomed:", welcomed)
assert welcomed == ["ada"]
