"""What the endpoint logs and answers when it refuses or fails: levels, escaping, and what a response carries.

Values from the request (its path, task name, queue name, the caller's
address) reach the log escaped, so that a ``\\n`` in them cannot forge a log
line; refusals of a caller not yet authenticated log at WARNING, never
ERROR; a body that cannot be read is 400 without a traceback; and the
``exception`` of a 403 or 500 response, and the traceback of a dropped task,
are never lost.
"""

from __future__ import annotations

import io
import logging
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from im_task_testsupport import sink

from im_task import configure, task
from im_task.errors import (
    BodyTooLargeError,
    CallerError,
    ConfigurationError,
    SignatureError,
    UnreadableBodyError,
)
from im_task.executor import handle_deferred_request, handle_request
from im_task.headers import make_task_headers
from im_task.response import OUTCOME_HEADER, TaskResponse
from im_task.transports import RecordingTransport, TaskRequest

FORGED = "\r\nCRITICAL:im_task:forged line"
PATH = "/_ah/task/app/work" + FORGED
TASK_NAME = "task-1" + FORGED.replace(":", "-")
ADDRESS = "10.0.0.1" + FORGED


@task
def recorded(label: str) -> None:
    sink.record(label)


@task
def broken() -> None:
    raise RuntimeError("the task's own failure")


class FailingStream:
    """A body stream that fails as a server's does when the client resets the connection."""

    def __init__(self) -> None:
        self.error = ConnectionResetError(104, "Connection reset by peer")

    def read(self, size: int = -1) -> bytes:
        """Raises the reset."""
        raise self.error


def headers(task_name: str = TASK_NAME, queue_name: str = "default", **extra: str) -> dict[str, str]:
    return {**make_task_headers(queue_name=queue_name, task_name=task_name), **extra}


@pytest.fixture
def recorder(im_task_recorder: RecordingTransport) -> RecordingTransport:
    return im_task_recorder


def enqueued(recorder: RecordingTransport, func: Callable[..., Any], *args: Any) -> TaskRequest:
    func(*args)
    return recorder.requests[-1]


def deliver(request: TaskRequest, task_name: str = TASK_NAME) -> TaskResponse:
    return handle_request(
        "POST", request.url, request.body, {**request.headers, **headers(task_name, request.queue)}, ADDRESS
    )


def im_task_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "im_task" and r.levelno >= logging.INFO]


def assert_one_escaped_line(caplog: pytest.LogCaptureFixture, level: int, *expected: str) -> logging.LogRecord:
    [record] = im_task_records(caplog)
    message = record.getMessage()
    assert (record.levelname, "\n" in message, "\r" in message) == (logging.getLevelName(level), False, False), message
    for value in expected:
        assert repr(value) in message, message
    return record


# --- refusals of unauthenticated requests: WARNING, escaped, and the exception kept ------------------------------


def test_no_task_headers_is_one_escaped_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = handle_request("POST", PATH, b"x", {}, ADDRESS)
    assert response.status == 403
    assert_one_escaped_line(caplog, logging.WARNING, PATH, ADDRESS)


def test_a_bad_signature_is_one_escaped_warning_and_the_403_keeps_its_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = handle_request("POST", PATH, b"\x03" + b"k" * 8 + b"m" * 32 + b"payload", headers(), ADDRESS)
    assert response.status == 403
    assert isinstance(response.exception, SignatureError)
    record = assert_one_escaped_line(caplog, logging.WARNING, PATH, TASK_NAME, ADDRESS)
    assert record.exc_info is None
    assert str(response.exception) in record.getMessage()


def test_a_refused_caller_is_one_escaped_warning_and_the_403_keeps_its_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure(environment="production")  # X-AppEngine-* headers outside App Engine prove nothing
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = handle_request("POST", PATH, b"x", headers(), ADDRESS)
    assert response.status == 403
    assert isinstance(response.exception, CallerError)
    record = assert_one_escaped_line(caplog, logging.WARNING, PATH, TASK_NAME, ADDRESS)
    assert str(response.exception) in record.getMessage()


def test_a_body_over_the_limit_is_one_escaped_warning_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    configure(max_body_size=1024)
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = handle_request("POST", PATH, b"x" * 1025, headers(), ADDRESS)
    assert (response.status, response.headers[1]) == (413, (OUTCOME_HEADER, "refused"))
    assert isinstance(response.exception, BodyTooLargeError)
    record = assert_one_escaped_line(caplog, logging.WARNING, PATH, TASK_NAME, ADDRESS)
    assert "max_body_size" in record.getMessage()


def test_an_unreadable_body_is_400_logged_once_at_warning_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = FailingStream()
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = handle_request("POST", PATH, stream, headers(**{"Content-Length": "100"}), ADDRESS)
    assert (response.status, response.status_line, response.body) == (
        400,
        "400 Bad Request",
        b"Bad Request: the body could not be read.\n",
    )
    assert (OUTCOME_HEADER, "refused") in response.headers
    assert isinstance(response.exception, UnreadableBodyError)
    assert response.exception.__cause__ is stream.error
    record = assert_one_escaped_line(caplog, logging.WARNING, PATH, TASK_NAME, ADDRESS)
    assert record.exc_info is None
    assert "ConnectionResetError(104, 'Connection reset by peer')" in record.getMessage()


def test_a_body_shorter_than_its_content_length_is_400(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = handle_request("POST", PATH, io.BytesIO(b"cut short"), headers(**{"Content-Length": "500"}))
    assert response.status == 400
    record = assert_one_escaped_line(caplog, logging.WARNING, PATH, TASK_NAME)
    assert "ended after 9 of the 500 bytes" in record.getMessage()
    assert "an unknown address" in record.getMessage()


def test_the_deferred_endpoint_refuses_an_unreadable_body_alike(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = handle_deferred_request("POST", "/_ah/queue/deferred", FailingStream(), headers(), ADDRESS)
    assert response.status == 400
    assert_one_escaped_line(caplog, logging.WARNING, TASK_NAME, ADDRESS)


# --- errors of ours: 500 keeps its exception; logged at ERROR, escaped ------------------------------------------------


def test_misconfiguration_is_500_keeping_its_exception_logged_once_escaped(caplog: pytest.LogCaptureFixture) -> None:
    configure(service_account_email="tasks@example.iam.gserviceaccount.com")  # no audience to check tokens against
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = handle_request("POST", PATH, b"x", headers(), ADDRESS)
    assert response.status == 500
    assert isinstance(response.exception, ConfigurationError)
    record = assert_one_escaped_line(caplog, logging.ERROR, PATH, TASK_NAME)
    assert "audience" in record.getMessage()


def test_a_failing_task_is_500_keeping_its_exception_and_traceback(
    recorder: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = deliver(enqueued(recorder, broken))
    assert response.status == 500
    assert isinstance(response.exception, RuntimeError)
    assert str(response.exception) == "the task's own failure"
    [record] = [r for r in im_task_records(caplog) if r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR
    assert "\n" not in record.getMessage()
    assert repr(TASK_NAME) in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is response.exception


def test_a_task_that_runs_logs_its_escaped_name_at_debug_only(
    recorder: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = deliver(enqueued(recorder, recorded, "ran"))
    assert response.status == 200
    assert sink.calls == ["ran"]
    assert im_task_records(caplog) == []
    debug = [r.getMessage() for r in caplog.records if r.name == "im_task" and r.levelno == logging.DEBUG]
    assert debug
    assert all("\n" not in message and repr(TASK_NAME) in message for message in debug), debug


def test_a_warm_up_failure_is_500_keeping_its_exception(
    recorder: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    request = enqueued(recorder, recorded, "never")
    configure(warmup_module=f"im_task_no_such_module_{uuid.uuid4().hex}")
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = deliver(request)
    assert response.status == 500
    assert isinstance(response.exception, ModuleNotFoundError)
    assert sink.calls == []


# --- dropped, cannot be decoded: the traceback is logged --------------------------------------------------------------


@pytest.fixture
def vanishing_task(recorder: RecordingTransport) -> Iterator[tuple[types.ModuleType, TaskRequest]]:
    """A task enqueued from a module whose function is then removed (the code changed since it was enqueued)."""
    module = types.ModuleType(f"im_task_test_vanishing_{uuid.uuid4().hex}")

    def doomed(label: str) -> None:
        sink.record(label)

    doomed.__module__ = module.__name__
    doomed.__qualname__ = "doomed"
    module.doomed = task(doomed)  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        module.doomed("never")  # type: ignore[attr-defined]
        del module.doomed  # type: ignore[attr-defined]
        yield module, recorder.requests[-1]
    finally:
        sys.modules.pop(module.__name__, None)


def test_an_undecodable_task_is_dropped_logging_its_traceback(
    vanishing_task: tuple[types.ModuleType, TaskRequest], caplog: pytest.LogCaptureFixture
) -> None:
    _, request = vanishing_task
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = deliver(request)
    assert (response.status, response.body) == (200, b"Dropped: the task cannot be decoded.\n")
    assert isinstance(response.exception, AttributeError)
    assert sink.calls == []
    [record] = [r for r in im_task_records(caplog) if r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR
    assert "cannot be decoded" in record.getMessage()
    assert "\n" not in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is response.exception


def test_a_refused_outbox_sweep_is_one_escaped_warning(caplog: pytest.LogCaptureFixture) -> None:
    from im_task.sweeping import handle_sweep_request

    configure(environment="production")  # outside App Engine nothing proves the caller is cron
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        response = handle_sweep_request("GET", "/_ah/im-task/sweep" + FORGED, b"", {}, ADDRESS)
    assert response.status == 403
    assert_one_escaped_line(caplog, logging.WARNING, "/_ah/im-task/sweep" + FORGED, ADDRESS)
