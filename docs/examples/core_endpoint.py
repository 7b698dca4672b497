"""The request contract of the task endpoint, over real HTTP.

The endpoint is served by a real HTTP server on 127.0.0.1. The script plays
the queue: it takes the signed bodies that calls produce (a
``RecordingTransport`` keeps them), POSTs them with the task headers a queue
sends, and checks the status of each outcome. It exits with status 0 only if
every answer is the documented one.
"""

import http.client
import logging
import socket
from urllib.parse import urlsplit

from im_task import PermanentTaskFailure, RetryTaskException, SingularTaskFailure, configure, task
from im_task.config import get_keyring
from im_task.envelope import Binding, seal
from im_task.headers import make_task_headers
from im_task.testing import queue_delivery_headers, serve_wsgi
from im_task.transports import RecordingTransport
from im_task.wsgi import TaskWSGIApp

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # the endpoint logs failures with tracebacks
recorder = RecordingTransport()
configure(transport=recorder, max_body_size=64 * 1024)


def post(base_url, path, body, headers, method="POST"):
    """One HTTP request; returns the status, the headers and the body of the answer."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post_cut_short(base_url, path, body, headers):
    """Declares the whole body, sends half of it and stops sending: a body the server cannot read."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest("POST", path)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders(body[: len(body) // 2])
        connection.sock.shutdown(socket.SHUT_WR)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# [start outcomes]
@task
def succeed():
    pass


@task
def stop_for_good():
    raise PermanentTaskFailure("the order was cancelled")


@task
def fail_quietly():
    raise SingularTaskFailure("the mail server is busy")


@task
def ask_for_retry():
    raise RetryTaskException("not ready yet")


@task
def crash():
    raise KeyError("oops")


@task(retry_options={"task_retry_limit": 2})
def limited():
    raise RuntimeError("always fails")


# [end outcomes]


# [start contract]
def signed_body(task_function):
    """The signed body a call of `task_function` sends to its queue."""
    task_function()
    return recorder.requests.pop().body


queue_headers = make_task_headers(queue_name="default", task_name="t1")

with serve_wsgi(TaskWSGIApp()) as base_url:
    url = "/_ah/task/example/f"
    expected = {succeed: 200, stop_for_good: 200, fail_quietly: 408, ask_for_retry: 500, crash: 500}
    for task_function, status in expected.items():
        answer, _, text = post(base_url, task_function.url, signed_body(task_function), queue_headers)
        assert answer == status, (task_function, answer, text)
        assert b"Traceback" not in text
        assert b"oops" not in text
        print(f"{task_function.__name__:>14}: {answer} {text.decode().strip()}")

    # The endpoint enforces task_retry_limit when the caller proves it is the queue (here: signed as the local
    # queue signs its deliveries). A failure on the last attempt it allows is given up with a 200 at once (not
    # answered 500 only to be given up on the next delivery), and so is a delivery past it.
    limited()
    request = recorder.requests.pop()
    for retry, status in ((1, 500), (2, 200), (3, 200)):
        proven = queue_delivery_headers(request, retry_count=retry, task_name="t2")
        assert post(base_url, limited.url, request.body, proven)[0] == status
    # The count of a caller that proves nothing (accepted in development only) decides nothing: the task runs.
    by_hand = make_task_headers(queue_name="default", task_name="t2", retry_count=3)
    assert post(base_url, limited.url, request.body, by_hand)[0] == 500

    # A task's envelope is bound to its URL and queue: the same body POSTed anywhere else runs nothing.
    assert post(base_url, url, signed_body(succeed), queue_headers)[0] == 403

    # Signed by us, but the call cannot be decoded (its code changed since it was enqueued): dropped with a 200.
    binding = Binding.for_task(path=url, queue="default", headers={}, lifetime=3600)
    stale = seal(b"a call pickled by an older version of the code", get_keyring(), binding)
    assert post(base_url, url, stale, queue_headers)[0] == 200

    # Not from a queue, or not signed with our secret: 403, and nothing is unpickled.
    assert post(base_url, url, signed_body(succeed), {})[0] == 403
    forged = bytearray(signed_body(succeed))
    forged[-1] ^= 1
    assert post(base_url, url, bytes(forged), queue_headers)[0] == 403

    # Over max_body_size: 413, read no further. Not a POST: 405 with Allow: POST.
    assert post(base_url, url, b"x" * (64 * 1024 + 1), queue_headers)[0] == 413
    # A body that cannot be read (cut short here; malformed chunks, a reset): 400, a warning without a traceback.
    assert post_cut_short(base_url, url, signed_body(succeed), queue_headers)[0] == 400
    status, headers, _ = post(base_url, url, None, queue_headers, method="GET")
    assert (status, headers["Allow"]) == (405, "POST")
# [end contract]
print("Every answer is the documented one.")
