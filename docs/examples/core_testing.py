"""Testing an application's tasks with im-task's pytest fixtures.

This file is a pytest test module. Run it with ``pytest core_testing.py``;
run as a script, it runs pytest on itself and exits with pytest's status.
The fixtures (``im_task_settings``, ``im_task_immediate``,
``im_task_recorder``, ``im_task_local_queue``) come from the pytest plugin
that installing im-task registers: nothing to import.
"""

import urllib.request

import pytest

from im_task import ConfigurationError, task
from im_task.config import get_settings
from im_task.testing import queue_delivery_headers, serve_wsgi
from im_task.wsgi import TaskWSGIApp

# The application code under test.
SENT = []
LOGINS = []
CHARGED = []


@task(queue="mail", countdown=60)
def send_welcome(address):
    if "@" not in address:
        raise ValueError(f"not an address: {address}")
    SENT.append(address)


@task(queue="audit")
def record_login(address):
    LOGINS.append(address)


@task(retry_options={"task_retry_limit": 2})
def charge(order):
    CHARGED.append(order)


def sign_up(address):
    """A view: creates the account, and mails the user later."""
    return send_welcome(address)


def log_in(address):
    """A view: logs the user in, and records it in the background."""
    return record_login(address)


def site(environ, start_response):
    """The application's own pages (any WSGI app: Flask, Django, webapp2...): GET /login?ada@example.com."""
    log_in(environ["QUERY_STRING"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"welcome back\n"]


@pytest.fixture(autouse=True)
def _forget_what_tasks_did():
    SENT.clear()
    LOGINS.clear()
    CHARGED.clear()


# [start settings]
def test_settings_are_the_tests_own(im_task_settings):
    im_task_settings(default_queue="low", secret="a-test-secret-of-enough-bytes-0123")  # configure more

    settings = get_settings()
    assert settings.default_queue == "low"
    assert settings.data_dir == im_task_settings.data_dir  # a temporary directory


# [end settings]


# [start immediate]
def test_sign_up_sends_the_welcome_mail(im_task_immediate):
    sign_up("ada@example.com")  # runs at once, through the whole path

    assert SENT == ["ada@example.com"]


def test_a_failing_task_raises_in_the_caller(im_task_immediate):
    with pytest.raises(ValueError, match="not an address"):
        sign_up("ada")


# [end immediate]


# [start recording]
def test_sign_up_enqueues_on_the_mail_queue(im_task_recorder):
    handle = sign_up("grace@example.com")

    [request] = im_task_recorder.requests
    assert request.queue == "mail"
    assert request.name == handle.name
    assert request.schedule_time == handle.eta  # 60 s after the call
    assert SENT == []  # nothing ran yet

    [response] = im_task_recorder.run_all()  # now run it, through the real endpoint
    assert response.status == 200
    assert SENT == ["grace@example.com"]


# [end recording]


# [start http]
@pytest.fixture
def im_task_wsgi_app(im_task_settings):
    """The application im_task_local_queue serves: tasks under /_ah/task, the site's pages elsewhere."""
    return TaskWSGIApp(fallback=site)


def test_tasks_travel_over_http(im_task_local_queue):
    with urllib.request.urlopen(im_task_local_queue.base_url + "/login?alan@example.com") as page:
        assert page.read() == b"welcome back\n"

    im_task_local_queue.join()  # until nothing is due or being delivered

    assert LOGINS == ["alan@example.com"]


# [end http]


# [start by hand]
def test_past_its_retry_limit_a_task_is_not_run(im_task_recorder):
    charge("order-7")
    [request] = im_task_recorder.requests

    # The queue's fourth attempt (three retries), signed as im-task's own queues sign theirs.
    headers = queue_delivery_headers(request, retry_count=3)
    with serve_wsgi(TaskWSGIApp()) as base_url:
        post = urllib.request.Request(base_url + request.url, data=request.body, headers=headers, method="POST")
        with urllib.request.urlopen(post) as answer:
            assert answer.status == 200
            assert answer.headers["X-Im-Task-Outcome"] == "gave-up"

    assert CHARGED == []


# [end by hand]


# [start guard]
def test_without_a_fixture_nothing_reaches_the_real_queue():
    with pytest.raises(ConfigurationError, match="Use one of im-task's pytest fixtures"):
        log_in("eve@example.com")


# [end guard]

if __name__ == "__main__":  # run pytest on this file, in a process of its own
    import subprocess
    import sys

    raise SystemExit(subprocess.call([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"]))
