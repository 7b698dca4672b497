"""Every row of the request contract, through the Flask adapter served by a real WSGI server on 127.0.0.1."""

from __future__ import annotations

import logging
import pickle
import sys
import types
from typing import Any

import pytest
from flask import Flask
from im_task_testsupport import sink as flask_sink
from im_task_testsupport.context import task_context
from im_task_testsupport.proof import proven

from flask_helpers import TEST_SECRET, Client, Reply
from im_task import (
    PermanentTaskFailure,
    RetryTaskException,
    SingularTaskFailure,
    configure,
    get_queue_name,
    get_retry_count,
    get_task_headers,
    get_task_name,
    is_from_task_queue,
    task,
)
from im_task.config import get_keyring
from im_task.envelope import CONTENT_TYPE, seal
from im_task.headers import APPENGINE, CLOUDTASKS, make_task_headers
from im_task.keys import Keyring
from im_task.serialization import TaskCall, dumps_call
from im_task.testing import serve_wsgi
from im_task.transports import RecordingTransport, TaskRequest
from im_task_flask import ImTask


@task
def add(a: int, b: int) -> None:
    flask_sink.record("add", a + b)


@task
def fail_permanently() -> None:
    raise PermanentTaskFailure("this will never work")


@task
def fail_once() -> None:
    raise SingularTaskFailure("not this time")


@task
def crash() -> None:
    raise RuntimeError("secret-detail-that-must-not-leak")


@task
def ask_for_retry() -> None:
    raise RetryTaskException("again please")


@task(retry_options={"task_retry_limit": 2})
def limited() -> None:
    flask_sink.record("limited", get_retry_count())


@task(includeheaders=True)
def with_headers(tag: str, headers: Any) -> None:
    flask_sink.record(tag, headers["x-appengine-taskretrycount"], headers["X-APPENGINE-QUEUENAME"])


@task
def record_length(text: str) -> None:
    flask_sink.record("length", len(text))


@task
def report_context() -> None:
    flask_sink.record(task_context(header="X-Custom"))


class _RecordsWhenUnpickled:
    """Unpickling this records a call: proof that a refused body was never unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (flask_sink.record, ("UNPICKLED",))


def enqueued(recorder: RecordingTransport, func: Any, *args: Any, **kwargs: Any) -> TaskRequest:
    recorder.clear()
    func(*args, **kwargs)
    (request,) = recorder.requests
    return request


def deliver(
    client: Client,
    request: TaskRequest,
    *,
    family: str = APPENGINE,
    retry_count: int = 0,
    path: str | None = None,
    body: bytes | None = None,
    extra: dict[str, str] | None = None,
) -> Reply:
    headers = {
        **request.headers,
        **make_task_headers(
            queue_name=request.queue,
            task_name=request.name or "t",
            retry_count=retry_count,
            execution_count=retry_count,
            family=family,
        ),
    }
    sent = request.body if body is None else body
    return client.request("POST", path or request.url, sent, {**proven(headers, sent), **(extra or {})})


# -- 200: the task ran ------------------------------------------------------


def test_a_task_runs_and_answers_200(client: Client, recorder: RecordingTransport) -> None:
    reply = deliver(client, enqueued(recorder, add, 2, 3))
    assert (reply.status, reply.body) == (200, b"OK\n")
    assert flask_sink.calls == [("add", 5)]


def test_a_closure_runs(client: Client, recorder: RecordingTransport) -> None:
    factor = 7

    @task
    def times(x: int) -> None:
        flask_sink.record("times", x * factor)

    reply = deliver(client, enqueued(recorder, times, 6))
    assert reply.status == 200
    assert flask_sink.calls == [("times", 42)]


def test_the_cloud_tasks_header_family_works_too(client: Client, recorder: RecordingTransport) -> None:
    request = enqueued(recorder, report_context.using(queue="mail"))
    reply = deliver(client, request, family=CLOUDTASKS, retry_count=1)
    assert reply.status == 200
    (seen,) = flask_sink.calls
    assert seen["queue"] == "mail"
    assert seen["retry"] == 1


@pytest.mark.parametrize("path", ["/_ah/task/x", "/_ah/task/a/b/c/d/e", "/_ah/task/pkg.mod/Outer/inner/lambda"])
def test_a_task_at_any_depth_under_the_route_is_served(client: Client, recorder: RecordingTransport, path: str) -> None:
    reply = deliver(client, enqueued(recorder, add.using(url=path), 1, 1))
    assert reply.status == 200
    assert flask_sink.calls == [("add", 2)]


@pytest.mark.parametrize("path", ["/_ah/task/x", "/_ah/task/a/b/c/d/e"])
def test_a_task_replayed_under_another_path_of_the_route_is_403(
    client: Client, recorder: RecordingTransport, path: str
) -> None:
    reply = deliver(client, enqueued(recorder, add, 1, 1), path=path)
    assert reply.status == 403
    assert flask_sink.calls == []


def test_a_task_whose_path_is_not_ascii_is_served(client: Client, recorder: RecordingTransport) -> None:
    @task
    def café() -> None:  # noqa: PLC2401 - a task whose URL is not ASCII
        flask_sink.record("café")

    request = enqueued(recorder, café)
    assert request.url.endswith("/caf%C3%A9")
    assert deliver(client, request).status == 200
    assert flask_sink.calls == ["café"]


def test_nested_function_tasks_are_posted_to_their_own_nested_path(
    client: Client, recorder: RecordingTransport
) -> None:
    def outer() -> Any:
        @task
        def inner() -> None:
            flask_sink.record("inner")

        return inner

    request = enqueued(recorder, outer())
    assert request.url.endswith("/outer/inner")
    assert deliver(client, request).status == 200
    assert flask_sink.calls == ["inner"]


def test_the_app_s_own_routes_still_work(client: Client) -> None:
    reply = client.request("POST", "/hello", b"")
    assert (reply.status, reply.body) == (200, b"hello")


def test_paths_outside_the_route_are_not_served(client: Client, recorder: RecordingTransport) -> None:
    request = enqueued(recorder, add, 1, 2)
    assert deliver(client, request, path="/_ah/taskx/add").status == 404
    assert deliver(client, request, path="/_ah/task").status == 404
    assert flask_sink.calls == []


# -- failures ---------------------------------------------------------------


def test_permanent_failure_is_200_and_logged_with_traceback(
    client: Client, recorder: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="im_task"):
        reply = deliver(client, enqueued(recorder, fail_permanently))
    assert reply.status == 200
    (record,) = [r for r in caplog.records if "failed permanently" in r.getMessage()]
    assert record.exc_info is not None


def test_singular_failure_is_408(client: Client, recorder: RecordingTransport) -> None:
    assert deliver(client, enqueued(recorder, fail_once)).status == 408


@pytest.mark.parametrize("func", [crash, ask_for_retry])
def test_other_exceptions_are_500_without_a_traceback_in_the_body(
    client: Client, recorder: RecordingTransport, caplog: pytest.LogCaptureFixture, func: Any
) -> None:
    with caplog.at_level(logging.ERROR, logger="im_task"):
        reply = deliver(client, enqueued(recorder, func))
    assert reply.status == 500
    assert b"Traceback" not in reply.body
    assert b"secret-detail" not in reply.body
    assert any(r.exc_info for r in caplog.records if r.name == "im_task")


def test_the_retry_limit_is_honoured(client: Client, recorder: RecordingTransport) -> None:
    request = enqueued(recorder, limited)
    assert deliver(client, request, retry_count=2).status == 200
    assert flask_sink.calls == [("limited", 2)]
    assert deliver(client, request, retry_count=3).status == 200
    assert flask_sink.calls == [("limited", 2)]  # given up: not run again


# -- 403: not from a queue, or not signed by us -------------------------------


def test_no_task_headers_is_403_and_nothing_is_unpickled(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    body = seal(pickle.dumps(_RecordsWhenUnpickled()), get_keyring())
    with caplog.at_level(logging.WARNING, logger="im_task"):
        reply = client.request("POST", "/_ah/task/x/y", body, {"Content-Type": CONTENT_TYPE})
    assert reply.status == 403
    assert flask_sink.calls == []
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)  # the caller's address reaches the core


def test_half_the_task_headers_is_403(client: Client, recorder: RecordingTransport) -> None:
    request = enqueued(recorder, add, 1, 2)
    reply = client.request("POST", request.url, request.body, {"X-AppEngine-QueueName": "default"})
    assert reply.status == 403
    assert flask_sink.calls == []


@pytest.mark.parametrize("family", [APPENGINE, CLOUDTASKS])
def test_a_forged_body_is_403_and_nothing_is_unpickled(
    client: Client, recorder: RecordingTransport, family: str
) -> None:
    request = enqueued(recorder, add, 1, 2)
    forged = seal(pickle.dumps(_RecordsWhenUnpickled()), Keyring([b"not-the-configured-secret"]))
    assert deliver(client, request, body=forged, family=family).status == 403
    assert flask_sink.calls == []


def test_an_unsigned_pickle_is_403(client: Client, recorder: RecordingTransport) -> None:
    request = enqueued(recorder, add, 1, 2)
    assert deliver(client, request, body=pickle.dumps(_RecordsWhenUnpickled())).status == 403
    assert flask_sink.calls == []


def test_a_tampered_body_is_403(client: Client, recorder: RecordingTransport) -> None:
    request = enqueued(recorder, add, 1, 2)
    tampered = request.body[:-1] + bytes([request.body[-1] ^ 1])
    assert deliver(client, request, body=tampered).status == 403
    assert deliver(client, request, body=b"").status == 403
    assert flask_sink.calls == []


def test_a_body_signed_with_an_older_secret_still_verifies(client: Client, recorder: RecordingTransport) -> None:
    request = enqueued(recorder, add, 4, 4)
    configure(secret=["a-brand-new-secret-value-0123456789ab", TEST_SECRET])
    assert deliver(client, request).status == 200
    assert flask_sink.calls == [("add", 8)]


# -- 200: verified but undecodable --------------------------------------------


def test_a_verified_body_that_cannot_be_decoded_is_dropped_with_200(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    module = types.ModuleType("im_task_flask_vanishing")

    def vanished() -> None:
        flask_sink.record("vanished")

    vanished.__module__ = module.__name__
    vanished.__qualname__ = "vanished"
    module.vanished = vanished  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        body = seal(
            dumps_call(TaskCall(vanished, description="/_ah/task/im_task_flask_vanishing/vanished")), get_keyring()
        )
    finally:
        del sys.modules[module.__name__]  # the code changed since the task was enqueued
    headers = {"Content-Type": CONTENT_TYPE, **make_task_headers(queue_name="default", task_name="gone-1")}
    with caplog.at_level(logging.ERROR, logger="im_task"):
        reply = client.request("POST", "/_ah/task/im_task_flask_vanishing/vanished", body, headers)
    assert reply.status == 200
    assert flask_sink.calls == []
    (record,) = [r for r in caplog.records if "cannot be decoded" in r.getMessage()]
    assert "vanished" in record.getMessage()


# -- 413: over the cap ----------------------------------------------------------


@pytest.fixture
def capped_client(recorder: RecordingTransport) -> Any:
    app = Flask("capped")
    app.config["IM_TASK_MAX_BODY_SIZE"] = 2048
    ImTask(app)
    with serve_wsgi(app) as base_url:
        yield Client(base_url)


def test_a_body_over_the_cap_is_413(capped_client: Client, recorder: RecordingTransport) -> None:
    request = enqueued(recorder, add, 1, 2)
    assert deliver(capped_client, request, body=request.body + b"x" * 4096).status == 413
    assert deliver(capped_client, request).status == 200  # a body under the cap still runs
    assert flask_sink.calls == [("add", 3)]


def test_a_body_just_under_the_default_cap_is_read_whole(client: Client, recorder: RecordingTransport) -> None:
    recorder.max_task_size = 2 * 1024 * 1024
    text = "y" * (900 * 1024)
    request = enqueued(recorder, record_length, text)
    assert len(request.body) > 900 * 1024
    assert deliver(client, request).status == 200
    assert flask_sink.calls == [("length", len(text))]


# -- 405: not a POST ----------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"])
def test_other_methods_are_405_with_allow_post(client: Client, recorder: RecordingTransport, method: str) -> None:
    request = enqueued(recorder, add, 1, 2)
    headers = make_task_headers(queue_name="default", task_name="t")
    reply = client.request(method, request.url, None, headers)
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"
    assert flask_sink.calls == []


# -- what a task sees ---------------------------------------------------------


def test_includeheaders_passes_the_request_headers(client: Client, recorder: RecordingTransport) -> None:
    reply = deliver(client, enqueued(recorder, with_headers, "hdr"), retry_count=4)
    assert reply.status == 200
    assert flask_sink.calls == [("hdr", "4", "default")]


def test_context_helpers_answer_inside_a_task(client: Client, recorder: RecordingTransport) -> None:
    request = enqueued(recorder, report_context.using(queue="reports", name="report-1", headers={"X-Custom": "yes"}))
    assert deliver(client, request, retry_count=2).status == 200
    assert flask_sink.calls == [
        {"from_queue": True, "retry": 2, "executions": 2, "task": "report-1", "queue": "reports", "header": "yes"}
    ]
    assert not is_from_task_queue()
    assert (get_retry_count(), get_task_name(), get_queue_name(), get_task_headers()) == (0, None, None, None)
