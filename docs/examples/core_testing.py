"""Testing an application's tasks with pytest: ImmediateTransport, RecordingTransport and serve_wsgi.

This file is a pytest test module. Run it with ``pytest core_testing.py``;
run as a script, it runs pytest on itself and exits with pytest's status.
"""

import pytest

from im_task import configure, task
from im_task.testing import isolated_settings, serve_wsgi
from im_task.transports import ImmediateTransport, LocalTransport, RecordingTransport
from im_task.wsgi import TaskWSGIApp

# The application code under test.
SENT = []
LOGINS = []


@task(queue="mail", countdown=60)
def send_welcome(address):
    if "@" not in address:
        raise ValueError(f"not an address: {address}")
    SENT.append(address)


@task(queue="audit")
def record_login(address):
    LOGINS.append(address)


def sign_up(address):
    """A view: creates the account, and mails the user later."""
    return send_welcome(address)


def log_in(address):
    """A view: logs the user in, and records it in the background."""
    return record_login(address)


# [start fixture]
@pytest.fixture(autouse=True)
def im_task_settings(tmp_path):
    """Every test starts from no im-task settings, with its own data directory and secret."""
    SENT.clear()
    LOGINS.clear()
    with isolated_settings(tmp_path, secret="a-test-secret-of-enough-bytes"):
        yield


# [end fixture]


# [start immediate]
def test_sign_up_sends_the_welcome_mail():
    configure(transport=ImmediateTransport())  # each task runs at once, through the whole path

    sign_up("ada@example.com")

    assert SENT == ["ada@example.com"]


def test_a_failing_task_raises_in_the_caller():
    configure(transport=ImmediateTransport())

    with pytest.raises(ValueError, match="not an address"):
        sign_up("ada")


# [end immediate]


# [start recording]
def test_sign_up_enqueues_on_the_mail_queue():
    recorder = RecordingTransport()
    configure(transport=recorder)

    handle = sign_up("grace@example.com")

    [request] = recorder.requests
    assert request.queue == "mail"
    assert request.name == handle.name
    assert request.schedule_time == handle.eta  # 60 s after the call
    assert SENT == []  # nothing ran yet

    [response] = recorder.run_all()  # now run it, through the real endpoint
    assert response.status == 200
    assert SENT == ["grace@example.com"]


# [end recording]


# [start http]
def test_tasks_travel_over_http(tmp_path):
    with serve_wsgi(TaskWSGIApp()) as base_url, LocalTransport(tmp_path / "q.sqlite3", target=base_url) as queue:
        configure(transport=queue)

        log_in("alan@example.com")

        assert queue.join(timeout=30)  # until nothing is due or being delivered
    assert LOGINS == ["alan@example.com"]


# [end http]

if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
