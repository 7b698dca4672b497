"""Transactional tasks in Django: enqueued if and only if the transaction commits, and never lost.

A whole Django project in one file (with django.contrib.auth for a model),
so the documentation build can run it. It exits with status 0 only if every
assertion holds.
"""

# Django is configured in this file, before the imports that need it.
# ruff: noqa: E402

import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "im_task_django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}},
    USE_TZ=True,
)
django.setup()

from django.core.management import call_command

call_command("migrate", verbosity=0)  # creates the outbox table, im_task_outbox, among others

from im_task import configure
from im_task.transports import RecordingTransport

recorder = RecordingTransport()  # records what is sent, so that this script can check it
configure(transport=recorder, secret="a-secret-for-this-example-0123456789")

# [start transactional]
from django.contrib.auth.models import User
from django.db import transaction

from im_task import task


@task(transactional=True)
def send_welcome(user_id):
    print("welcome,", User.objects.get(pk=user_id).username)  # the user is there: the task runs after commit


def sign_up(username):
    with transaction.atomic():
        user = User.objects.create(username=username)
        send_welcome(user.pk)  # written to the outbox in this transaction; sent after the commit
        return user


# [end transactional]

sign_up("ada")
assert len(recorder.requests) == 1  # sent once, after the commit
recorder.run_all()

# [start rollback]
try:
    with transaction.atomic():
        user = User.objects.create(username="bob")
        send_welcome(user.pk)
        raise RuntimeError("payment refused")  # rolls back the user and the task
except RuntimeError:
    pass
# [end rollback]

assert len(recorder.requests) == 0  # the rolled-back task was never sent
assert not User.objects.filter(username="bob").exists()

# [start outside]
from im_task import BadTransactionStateError

try:
    send_welcome(1)  # not inside transaction.atomic()
except BadTransactionStateError as exc:
    print("refused:", exc)
# [end outside]

# [start sweep]
from im_task import EnqueueError
from im_task.transports import Transport
from im_task_django.models import OutboxTask


class QueueDown(Transport):
    """A queue that cannot be reached, as when the process dies between the commit and the send."""

    def enqueue(self, request):
        raise EnqueueError("queue unreachable")


configure(transport=QueueDown())
sign_up("grace")  # commits; the send after commit fails and is logged; the task stays in the outbox
assert OutboxTask.objects.filter(sent_at__isnull=True).count() == 1  # ada's row is there too, marked sent

configure(transport=recorder)
call_command("im_task_sweep", "--older-than", "0")  # from cron: python manage.py im_task_sweep
# [end sweep]

assert not OutboxTask.objects.filter(sent_at__isnull=True).exists()  # marked sent: never sent again
[sent] = recorder.requests
assert sent.name.startswith("outbox-")  # fixed when the row was written: a queue refuses a second send
recorder.run_all()
call_command("im_task_sweep")  # the next sweep deletes the rows marked sent
assert OutboxTask.objects.count() == 0
