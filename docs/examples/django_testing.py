"""Testing a Django project's tasks with Django's TestCase, override_settings and im-task's test transports.

A whole Django project in one file, run by Django's test runner, so the
documentation build can run it. It exits with status 0 only if every test passes.
"""

# Django is configured in this file, before the imports that need it; TestCase's assert methods are Django's idiom.
# ruff: noqa: E402, PT009

import sys
import unittest

import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "im_task_django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}},
    ROOT_URLCONF=__name__,
    USE_TZ=True,
    IM_TASK={"SECRET": "a-test-secret-of-enough-bytes-0123"},
)
django.setup()

# The application code under test.
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpResponse
from django.urls import include, path

from im_task import task

SENT = []


@task(queue="mail")
def send_welcome(username):
    SENT.append(username)


@task(transactional=True)
def send_receipt(user_id):
    SENT.append(f"receipt for {User.objects.get(pk=user_id).username}")


def sign_up(request, username):
    with transaction.atomic():
        user = User.objects.create(username=username)
        send_receipt(user.pk)
    send_welcome(username)
    return HttpResponse(status=201)


urlpatterns = [path("", include("im_task_django.urls")), path("signup/<str:username>", sign_up)]

# [start tests]
from django.test import TestCase, override_settings

from im_task.runtime import get_transport
from im_task.transports import RecordingTransport


@override_settings(IM_TASK={"TRANSPORT": "immediate", "SECRET": "a-test-secret-of-enough-bytes-0123"})
class SignUpRunsTasksAtOnce(TestCase):
    def setUp(self):
        SENT.clear()

    def test_sign_up_sends_the_receipt_and_the_welcome(self):
        # TestCase wraps each test in a transaction: run the on_commit callbacks, where the receipt is sent.
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post("/signup/ada")
        self.assertEqual(response.status_code, 201)
        self.assertEqual(SENT, ["ada", "receipt for ada"])  # the receipt ran when the callbacks did


class SignUpRecordsTasks(TestCase):
    def setUp(self):
        SENT.clear()
        self.recorder = RecordingTransport()
        override = self.settings(IM_TASK={"TRANSPORT": self.recorder, "SECRET": "a-test-secret-of-enough-bytes-0123"})
        override.enable()
        self.addCleanup(override.disable)

    def test_welcome_goes_to_the_mail_queue(self):
        self.client.post("/signup/grace")
        self.assertIs(get_transport(), self.recorder)
        [welcome] = self.recorder.requests  # the receipt waits for a commit that TestCase never makes
        self.assertEqual(welcome.queue, "mail")
        self.assertEqual(SENT, [])  # nothing ran yet

        [response] = self.recorder.run_all()  # run it through the real endpoint
        self.assertEqual(response.status, 200)
        self.assertEqual(SENT, ["grace"])

    def test_a_rolled_back_sign_up_sends_no_receipt(self):
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            try:
                with transaction.atomic():
                    send_receipt(User.objects.create(username="bob").pk)
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
        self.assertEqual(callbacks, [])
        self.assertEqual(self.recorder.requests, [])


# [end tests]

if __name__ == "__main__":
    from django.test.runner import DiscoverRunner

    runner = DiscoverRunner(verbosity=1)
    runner.setup_test_environment()
    databases = runner.setup_databases()
    try:
        result = runner.run_suite(unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__]))
    finally:
        runner.teardown_databases(databases)
        runner.teardown_test_environment()
    sys.exit(0 if result.wasSuccessful() and result.testsRun == 3 else 1)
