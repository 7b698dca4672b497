"""What a running task knows of itself, and the neutral answers outside a task."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest
from im_task_testsupport import sink
from im_task_testsupport.context import task_context

from im_task import (
    configure,
    get_execution_count,
    get_queue_name,
    get_retry_count,
    get_task_headers,
    get_task_name,
    is_from_task_queue,
    log_as_retried,
    task,
)
from im_task.config import get_keyring
from im_task.envelope import seal
from im_task.executor import handle_request
from im_task.headers import CLOUDTASKS, Headers, make_task_headers
from im_task.serialization import TaskCall, dumps_call
from im_task.transports import ImmediateTransport, RecordingTransport


def snapshot() -> None:
    sink.record(task_context(header="x-appengine-taskretrycount"))


def run(func: Any, *, includeheaders: bool = False, **header_values: Any) -> int:
    body = seal(dumps_call(TaskCall(func, includeheaders=includeheaders)), get_keyring())
    values: dict[str, Any] = {"queue_name": "q", "task_name": "t", **header_values}
    headers = {**make_task_headers(**values), "X-Custom": "hello"}
    return handle_request("POST", "/_ah/task/ctx", body, headers).status


def test_neutral_values_outside_a_task() -> None:
    assert is_from_task_queue() is False
    assert get_retry_count() == 0
    assert get_execution_count() == 0
    assert get_task_name() is None
    assert get_queue_name() is None
    assert get_task_headers() is None


def test_values_inside_a_task() -> None:
    assert run(snapshot, queue_name="mail", task_name="t-9", retry_count=3, execution_count=2) == 200
    assert sink.calls == [
        {"from_queue": True, "retry": 3, "executions": 2, "task": "t-9", "queue": "mail", "header": "3"}
    ]
    test_neutral_values_outside_a_task()  # and neutral again afterwards


def test_values_are_reset_after_a_failing_task() -> None:
    def failing() -> None:
        snapshot()
        raise RuntimeError("boom")

    assert run(failing, retry_count=1) == 500
    assert sink.calls[0]["from_queue"] is True
    test_neutral_values_outside_a_task()


def test_values_through_a_transport() -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    handle = task(snapshot, queue="reports")()
    [request] = recorder.requests
    assert recorder.deliver(request, retry_count=4).status == 200
    [seen] = sink.calls
    assert (seen["queue"], seen["task"], seen["retry"], seen["executions"]) == ("reports", handle.name, 4, 4)


def test_cloud_tasks_family_is_understood() -> None:
    def snap_cloudtasks() -> None:
        headers = get_task_headers()
        assert headers is not None
        sink.record((get_queue_name(), get_retry_count(), headers["X-CLOUDTASKS-TASKNAME"]))

    assert run(snap_cloudtasks, family=CLOUDTASKS, queue_name="projects/p/locations/l/queues/bg", retry_count=1) == 200
    assert sink.calls == [("bg", 1, "t")]


def test_includeheaders_passes_a_case_insensitive_mapping() -> None:
    def with_headers(*, headers: Mapping[str, str]) -> None:
        sink.record(
            (
                isinstance(headers, Headers),
                headers["X-AppEngine-TaskRetryCount"],
                headers["x-appengine-taskretrycount"],
                headers["X-APPENGINE-QUEUENAME"],
                headers.get("x-custom"),
                "X-Custom" in headers,
                "missing" in headers,
            )
        )

    assert run(with_headers, includeheaders=True, retry_count=2) == 200
    assert sink.calls == [(True, "2", "2", "q", "hello", True, False)]


def test_includeheaders_option_end_to_end() -> None:
    configure(transport=ImmediateTransport())

    def with_headers(value: int, headers: Mapping[str, str]) -> None:
        sink.record((value, headers["x-appengine-queuename"], headers["CONTENT-TYPE"]))

    task(with_headers, includeheaders=True, queue="hdrs")(5)  # type: ignore[call-arg] # the endpoint passes headers
    assert sink.calls == [(5, "hdrs", "application/octet-stream")]


def test_without_includeheaders_no_headers_argument_is_passed() -> None:
    configure(transport=ImmediateTransport())

    def no_headers(**kwargs: Any) -> None:
        sink.record(kwargs)

    task(no_headers)(a=1)
    assert sink.calls == [{"a": 1}]


@pytest.mark.parametrize(
    ("retry_count", "level"),
    [(0, logging.INFO), (1, logging.WARNING), (2, logging.ERROR), (3, logging.CRITICAL), (50, logging.CRITICAL)],
)
def test_log_as_retried_gets_louder_with_retries(
    caplog: pytest.LogCaptureFixture, retry_count: int, level: int
) -> None:
    caplog.set_level(logging.DEBUG)

    def logs() -> None:
        log_as_retried("attempt for %s", "user-1")

    assert run(logs, retry_count=retry_count) == 200
    [record] = [r for r in caplog.records if r.getMessage() == "attempt for user-1"]
    assert record.levelno == level
    assert record.name == "im_task"


def test_log_as_retried_outside_a_task_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    log_as_retried("outside %d", 1)
    [record] = caplog.records
    assert (record.levelno, record.getMessage()) == (logging.ERROR, "outside 1")
    assert record.funcName == "test_log_as_retried_outside_a_task_is_an_error"  # the caller, not the helper


def test_log_as_retried_takes_a_logger_and_logging_keywords(caplog: pytest.LogCaptureFixture) -> None:
    mine = logging.getLogger("my.app")
    try:
        raise ValueError("why")
    except ValueError:
        log_as_retried("with %s", "details", logger=mine, exc_info=True, extra={"user": "u1"})
    [record] = caplog.records
    assert record.name == "my.app"
    assert record.exc_info is not None
    assert record.user == "u1"  # type: ignore[attr-defined]
