"""Every row of the request contract, through every adapter over real HTTP."""

from __future__ import annotations

import http.client
import pickle
from urllib.parse import urlsplit

import pytest
from conformance_support import CAP, Served, enqueue, queue_headers, sized_request
from im_task_testsupport import sink as conformance_recorder

from im_task import PermanentTaskFailure, RetryTaskException, SingularTaskFailure, task
from im_task.config import get_keyring
from im_task.envelope import seal
from im_task.keys import KEY_ID_SIZE, Keyring

SECRET_MESSAGE = "do-not-echo-this-0451"


@task
def ran(value: object) -> None:
    conformance_recorder.record("ran", value)


@task
def sized(padding: bytes) -> None:
    conformance_recorder.record("sized", len(padding))


@task
def fails_permanently() -> None:
    conformance_recorder.record("attempt")
    raise PermanentTaskFailure(SECRET_MESSAGE)


@task
def fails_once() -> None:
    conformance_recorder.record("attempt")
    raise SingularTaskFailure(SECRET_MESSAGE)


@task
def fails_with_retry() -> None:
    conformance_recorder.record("attempt")
    raise RetryTaskException(SECRET_MESSAGE)


@task
def fails_with_error() -> None:
    conformance_recorder.record("attempt")
    raise RuntimeError(SECRET_MESSAGE)


@task(retry_options={"task_retry_limit": 2})
def limited() -> None:
    conformance_recorder.record("limited")


def test_a_task_that_runs_answers_200(served_app: Served) -> None:
    reply = served_app.deliver(enqueue(ran, 1))
    assert reply.status == 200
    assert conformance_recorder.events() == [("ran", 1)]


def test_permanent_failure_answers_200_so_it_is_not_retried(served_app: Served) -> None:
    reply = served_app.deliver(enqueue(fails_permanently))
    assert reply.status == 200
    assert conformance_recorder.events() == ["attempt"]
    assert SECRET_MESSAGE.encode() not in reply.body


def test_singular_failure_answers_408(served_app: Served) -> None:
    reply = served_app.deliver(enqueue(fails_once))
    assert reply.status == 408
    assert conformance_recorder.events() == ["attempt"]


@pytest.mark.parametrize("failing", [fails_with_retry, fails_with_error], ids=["RetryTaskException", "RuntimeError"])
def test_other_exceptions_answer_500_without_a_traceback(served_app: Served, failing: object) -> None:
    reply = served_app.deliver(enqueue(failing))  # type: ignore[arg-type]
    assert reply.status == 500
    assert conformance_recorder.events() == ["attempt"]
    assert b"Traceback" not in reply.body
    assert SECRET_MESSAGE.encode() not in reply.body
    assert b".py" not in reply.body


def test_a_task_past_its_retry_limit_answers_200_without_running(served_app: Served) -> None:
    request = enqueue(limited)
    assert served_app.deliver(request, retry_count=3).status == 200
    assert conformance_recorder.events() == []
    assert served_app.deliver(request, retry_count=2).status == 200
    assert conformance_recorder.events() == ["limited"]


@pytest.mark.parametrize(
    "drop",
    [
        ("X-AppEngine-QueueName", "X-AppEngine-TaskName"),
        ("X-AppEngine-QueueName",),
        ("X-AppEngine-TaskName",),
    ],
    ids=["no-task-headers", "no-queue-name", "no-task-name"],
)
def test_missing_task_headers_answer_403_and_nothing_is_unpickled(served_app: Served, drop: tuple[str, ...]) -> None:
    request = enqueue(ran, conformance_recorder.Tripwire())
    headers = {
        "X-AppEngine-QueueName": "default",
        "X-AppEngine-TaskName": "t1",
        "X-AppEngine-TaskRetryCount": "0",
        "Content-Type": "application/octet-stream",
    }
    for name in drop:
        del headers[name]
    reply = served_app.request("POST", request.url, request.body, headers)
    assert reply.status == 403
    assert conformance_recorder.events() == []


MAC_AT = 1 + KEY_ID_SIZE  # the envelope: version byte, key id, 32-byte MAC, payload
PAYLOAD_AT = MAC_AT + 32


def forge(kind: str, body: bytes) -> bytes:
    """A forged variant of a genuine task body."""
    if kind == "tampered-mac":
        return body[:MAC_AT] + bytes([body[MAC_AT] ^ 1]) + body[MAC_AT + 1 :]
    if kind == "tampered-payload":
        return body[:-1] + bytes([body[-1] ^ 1])
    if kind == "other-secret":
        return seal(body[PAYLOAD_AT:], Keyring([b"another-secret-0123456789abcdef"]))
    if kind == "unsigned":
        return body[PAYLOAD_AT:]
    assert kind == "empty"
    return b""


@pytest.mark.parametrize("forgery", ["tampered-mac", "tampered-payload", "other-secret", "unsigned", "empty"])
def test_bad_or_missing_signatures_answer_403_and_nothing_is_unpickled(served_app: Served, forgery: str) -> None:
    request = enqueue(ran, conformance_recorder.Tripwire())
    body = forge(forgery, request.body)
    reply = served_app.deliver(request, body=body)
    assert reply.status == 403
    assert conformance_recorder.events() == []


@pytest.mark.parametrize(
    "payload",
    [b"not a pickle at all", b"cno_such_module_conformance\nvanished\n.", pickle.dumps(("unknown format",))],
    ids=["garbage", "missing-module", "wrong-shape"],
)
def test_a_verified_but_undecodable_task_answers_200_and_is_dropped(served_app: Served, payload: bytes) -> None:
    request = enqueue(ran, 1)
    reply = served_app.deliver(request, body=seal(payload, get_keyring()))
    assert reply.status == 200
    assert conformance_recorder.events() == []


@pytest.mark.parametrize("size", [CAP - 1, CAP], ids=["just-under-the-cap", "at-the-cap"])
def test_a_large_body_within_the_cap_runs(served_app: Served, size: int) -> None:
    request = sized_request(sized, size)
    reply = served_app.deliver(request)
    assert reply.status == 200
    [(name, length)] = conformance_recorder.events()
    assert name == "sized"
    assert length > size - 1024


@pytest.mark.parametrize("size", [CAP + 1, 2 * CAP], ids=["one-byte-over", "twice-the-cap"])
def test_a_body_over_the_cap_answers_413_and_does_not_run(served_app: Served, size: int) -> None:
    request = sized_request(sized, size)
    reply = served_app.deliver(request)
    assert reply.status == 413
    assert conformance_recorder.events() == []


#: How long an adapter may take to refuse a declared body it must not read: far less than a client would wait.
PROMPTLY = 10.0


def test_a_huge_declared_body_is_refused_without_reading_it(served_app: Served) -> None:
    # Nothing is read past the cap: the 413 comes from the declared Content-Length alone. The body is
    # never sent, so an adapter that reads it (a framework's request.body, say) waits for it instead of
    # answering, and the client gives up after PROMPTLY seconds.
    request = enqueue(ran, conformance_recorder.Tripwire())
    parts = urlsplit(served_app.base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=PROMPTLY)
    try:
        connection.putrequest("POST", request.url)
        for name, value in {**request.headers, **queue_headers()}.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(50 * 1024 * 1024))
        connection.endheaders(request.body[:16])  # a few bytes of the 50 MiB declared, then nothing
        response = connection.getresponse()
        assert response.status == 413
        response.read()
    finally:
        connection.close()
    assert conformance_recorder.events() == []


def test_a_body_without_content_length_is_not_waited_for_and_does_not_run(served_app: Served) -> None:
    # PEP 3333: without Content-Length there is no body to read. An adapter that reads wsgi.input anyway
    # blocks until the client hangs up, and this request times out instead of being answered.
    request = enqueue(ran, conformance_recorder.Tripwire())
    headers = {**request.headers, **queue_headers()}
    reply = served_app.request("POST", request.url, request.body, headers, chunked=True)
    assert reply.status == 403
    assert conformance_recorder.events() == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND", "FROBNICATE"])
def test_methods_other_than_post_answer_405_with_allow_post(served_app: Served, method: str) -> None:
    request = enqueue(ran, conformance_recorder.Tripwire())
    body = b"" if method in ("GET", "HEAD", "OPTIONS") else request.body
    reply = served_app.request(method, request.url, body, queue_headers())
    assert reply.status == 405
    assert reply.headers.get("Allow") == "POST"
    assert conformance_recorder.events() == []
