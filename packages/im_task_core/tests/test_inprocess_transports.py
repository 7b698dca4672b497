"""The in-process transports: ``ImmediateTransport``, ``RecordingTransport`` and the ``Transport`` contract."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
from im_task_testsupport import sink
from im_task_testsupport.threads import run_in_threads

from im_task import (
    EnqueueError,
    PermanentTaskFailure,
    RetryTaskException,
    SingularTaskFailure,
    TaskAlreadyExistsError,
    TaskTooLargeError,
    configure,
    get_retry_count,
    is_from_task_queue,
    task,
)
from im_task.transports import ImmediateTransport, RecordingTransport, TaskRequest, Transport
from im_task.transports.base import task_size


def work(label: str) -> None:
    sink.record((label, is_from_task_queue(), threading.get_ident()))


def fail_with(exc: Exception) -> None:
    raise exc


def test_transport_base_contract() -> None:
    request = TaskRequest(queue="q", url="/_ah/task/x", body=b"12345", headers={"A": "bc"})
    with pytest.raises(NotImplementedError):
        Transport().enqueue(request)
    Transport().close()
    assert Transport.max_task_size == 100 * 1024
    assert task_size(request) == len("POST") + len("/_ah/task/x") + len("A") + len("bc") + 5


# --- ImmediateTransport ------------------------------------------------------------------------------------------


def test_immediate_runs_in_the_callers_thread_through_the_endpoint() -> None:
    immediate = ImmediateTransport()
    configure(transport=immediate)
    handle = task(work, countdown=3600)("now")  # countdown is ignored
    assert sink.calls == [("now", True, threading.get_ident())]
    assert handle.name is not None
    assert len(handle.name) == 32
    [(request, status)] = immediate.responses
    assert status == 200
    assert request.schedule_time is not None


def test_immediate_reraises_the_tasks_exception_except_permanent_failure() -> None:
    configure(transport=ImmediateTransport())
    with pytest.raises(RetryTaskException, match="again"):
        task(fail_with)(RetryTaskException("again"))
    with pytest.raises(SingularTaskFailure):
        task(fail_with)(SingularTaskFailure())
    with pytest.raises(ZeroDivisionError):
        task(lambda: 1 / 0)()
    assert task(fail_with)(PermanentTaskFailure("drop it")).name is not None


def test_immediate_without_raising_records_statuses() -> None:
    immediate = ImmediateTransport(raise_exceptions=False)
    configure(transport=immediate)
    task(fail_with)(ValueError("x"))
    task(fail_with)(SingularTaskFailure())
    task(fail_with)(PermanentTaskFailure())
    task(work)("fine")
    assert [status for _, status in immediate.responses] == [500, 408, 200, 200]


def test_immediate_applies_the_retry_count_of_a_first_attempt() -> None:
    configure(transport=ImmediateTransport())
    task(lambda: sink.record(get_retry_count()))()
    assert sink.calls == [0]


def test_immediate_refuses_reused_names_and_large_tasks_and_works_until_closed() -> None:
    immediate = ImmediateTransport(max_task_size=3000)
    configure(transport=immediate, payload_store="none")
    task(work, name="once")("a")
    with pytest.raises(TaskAlreadyExistsError, match="'once' is already taken on queue 'default'"):
        task(work, name="once")("b")
    with pytest.raises(TaskTooLargeError, match="over the inline limit of 3000 bytes"):
        task(work)("x" * 4000)
    immediate.close()
    immediate.close()
    with pytest.raises(EnqueueError, match="closed"):
        task(work)("c")
    assert [c[0] for c in sink.calls] == ["a"]


# --- RecordingTransport ------------------------------------------------------------------------------------------


def test_recording_records_in_order_without_running() -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    handles = [task(work, queue=f"q{i}")(str(i)) for i in range(3)]
    assert sink.calls == []
    assert [r.queue for r in recorder.requests] == ["q0", "q1", "q2"]
    assert [r.name for r in recorder.requests] == [h.name for h in handles]
    responses = recorder.run_all()
    assert [r.status for r in responses] == [200, 200, 200]
    assert [c[0] for c in sink.calls] == ["0", "1", "2"]
    assert recorder.requests == []
    assert recorder.run_all() == []


def test_recording_tasks_enqueued_by_tasks_are_recorded_not_run() -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    inner = task(work)

    def outer() -> None:
        inner("inner")

    task(outer)()
    recorder.run_all()
    assert sink.calls == []
    assert len(recorder.requests) == 1
    recorder.run_all()
    assert [c[0] for c in sink.calls] == ["inner"]


def test_recording_run_all_reports_failures() -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    task(fail_with)(RuntimeError("x"))
    [response] = recorder.run_all()
    assert response.status == 500
    assert isinstance(response.exception, RuntimeError)


def test_recording_names_clear_and_close() -> None:
    recorder = RecordingTransport(max_task_size=2000)
    configure(transport=recorder, payload_store="none")
    task(work, name="n")("a")
    with pytest.raises(TaskAlreadyExistsError):
        task(work, name="n")("a")
    with pytest.raises(TaskTooLargeError):
        task(work)("x" * 3000)
    recorder.clear()
    assert recorder.requests == []
    task(work, name="n")("a")  # forgotten by clear()
    recorder.close()
    with pytest.raises(EnqueueError, match="closed"):
        task(work)("b")


def test_recording_is_safe_from_many_threads() -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    fn = task(work)

    def enqueue_many() -> None:
        for i in range(25):
            fn(str(i))

    assert run_in_threads(enqueue_many) == []
    assert len(recorder.requests) == 200
    assert len({r.name for r in recorder.requests}) == 200


def test_in_process_delivery_drops_headers_only_a_queue_may_set() -> None:
    @task(includeheaders=True)
    def report(headers: Any) -> None:
        sink.record(
            (headers.get("X-AppEngine-TaskRetryCount"), "X-CloudTasks-TaskName" in headers, headers.get("X-Own"))
        )

    recorder = RecordingTransport()
    configure(transport=recorder)
    report.using(headers={"X-Own": "kept"})()
    [request] = recorder.requests
    forged = {**request.headers, "X_AppEngine_TaskRetryCount": "7", "X-CloudTasks-TaskName": "x", "X-Own": "swapped"}
    assert recorder.deliver(replace(request, headers=forged), retry_count=2).status == 200
    assert sink.calls == [("2", False, "kept")]
