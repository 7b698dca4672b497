"""The task view through a real WSGI server: one smoke test per row of the request contract."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
from django.test import override_settings

from django_testproject import tasks
from django_testproject.client import post_task, request
from im_task import config, configure, get_taskroute
from im_task.config import get_keyring
from im_task.envelope import seal
from im_task.transports import LocalTransport, RecordingTransport


def test_task_runs_200(server: str, recorder: RecordingTransport) -> None:
    tasks.record("ran")
    answer = post_task(server, recorder.requests[0])
    assert answer.status == 200
    assert tasks.RESULTS == ["ran"]


def test_permanent_failure_200(server: str, recorder: RecordingTransport) -> None:
    tasks.fail_permanently()
    assert post_task(server, recorder.requests[0]).status == 200


def test_singular_failure_408(server: str, recorder: RecordingTransport) -> None:
    tasks.fail_singular()
    assert post_task(server, recorder.requests[0]).status == 408


def test_other_exception_500_without_traceback(server: str, recorder: RecordingTransport) -> None:
    tasks.crash()
    answer = post_task(server, recorder.requests[0])
    assert answer.status == 500
    assert b"internal detail" not in answer.body
    assert b"Traceback" not in answer.body


def test_retry_limit_reached_200_without_running(server: str, recorder: RecordingTransport) -> None:
    tasks.limited("too late")
    answer = post_task(server, recorder.requests[0], retry_count=2)
    assert answer.status == 200
    assert tasks.RESULTS == []
    assert post_task(server, replace(recorder.requests[0], name="again"), retry_count=1).status == 200
    assert tasks.RESULTS == ["too late"]


def test_missing_queue_headers_403(server: str, recorder: RecordingTransport) -> None:
    tasks.record("never")
    answer = post_task(server, recorder.requests[0], with_queue_headers=False)
    assert answer.status == 403
    assert tasks.RESULTS == []


def test_bad_signature_403(server: str, recorder: RecordingTransport) -> None:
    tasks.record("never")
    original = recorder.requests[0]
    tampered = original.body[:-1] + bytes([original.body[-1] ^ 1])
    assert post_task(server, replace(original, body=tampered)).status == 403
    assert tasks.RESULTS == []


def test_undecodable_call_200(server: str, recorder: RecordingTransport) -> None:
    tasks.record("shape")
    undecodable = seal(b"not a pickled call", get_keyring())
    assert post_task(server, replace(recorder.requests[0], body=undecodable)).status == 200
    assert tasks.RESULTS == []


def test_body_over_cap_413(server: str, recorder: RecordingTransport) -> None:
    configure(max_body_size=2048)
    tasks.record("x" * 4096)
    answer = post_task(server, recorder.requests[0])
    assert answer.status == 413
    assert tasks.RESULTS == []


def test_non_post_405_with_allow(server: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = request(server, method, f"{get_taskroute()}/any/task")
        assert answer.status == 405, method
        assert answer.headers["allow"] == "POST"


def test_outside_route_is_the_projects(server: str) -> None:
    assert request(server, "GET", "/hello").body == b"hello"
    assert request(server, "POST", "/_ah/taskother/x").status == 404


def test_local_queue_delivers_in_process_with_no_target(tmp_path: Path) -> None:
    with LocalTransport(tmp_path / "queue.sqlite3") as queue:
        configure(transport=queue)
        tasks.record("in process")
        queue.join(timeout=30)
    assert tasks.RESULTS == ["in process"]


def test_local_queue_delivers_over_http(server: str, tmp_path: Path) -> None:
    with LocalTransport(tmp_path / "queue.sqlite3", target=server) as queue:
        configure(transport=queue)
        tasks.record("over http")
        queue.join(timeout=30)
    assert tasks.RESULTS == ["over http"]


def test_default_transport_needs_no_configuration(tmp_path: Path) -> None:
    """With nothing configured the local queue runs tasks in this project (as under runserver)."""
    from im_task.runtime import get_transport

    tasks.record("default")
    transport = get_transport()
    assert isinstance(transport, LocalTransport)
    transport.join(timeout=30)
    assert tasks.RESULTS == ["default"]


def test_oversized_body_is_refused_before_django_reads_it(server: str) -> None:
    """DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) would refuse with 400 if Django read request.body first."""
    configure(max_body_size=4 * 1024 * 1024)
    headers = {"X-AppEngine-QueueName": "default", "X-AppEngine-TaskName": "big"}
    answer = request(server, "POST", f"{get_taskroute()}/m/f", b"x" * (3 * 1024 * 1024), headers)
    assert answer.status == 403  # read by the executor in full, then refused for its signature


def test_failures_are_logged_once_by_im_task_not_by_django(
    server: str, recorder: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    tasks.fail_singular()
    tasks.crash()
    with caplog.at_level(logging.DEBUG):
        assert [post_task(server, r).status for r in recorder.requests] == [408, 500]
    assert [r for r in caplog.records if r.name == "django.request"] == []
    singular = [r for r in caplog.records if r.name == "im_task" and "failed once" in r.getMessage()]
    assert [r.levelno for r in singular] == [logging.DEBUG]


def test_misconfiguration_at_request_time_is_a_logged_500_without_traceback(
    server: str, recorder: RecordingTransport, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tasks.record("kept for a retry")
    config.reset()  # IM_TASK decides: production, and no secret (which start-up would have refused)
    with (
        override_settings(IM_TASK={"ENVIRONMENT": "production", "DATA_DIR": str(tmp_path)}, DEBUG=True),
        caplog.at_level(logging.ERROR),
    ):
        answer = post_task(server, recorder.requests[0])
    assert answer.status == 500  # retried by the queue until the configuration is fixed
    assert answer.body == b"im-task is misconfigured; see the server log.\n"
    assert tasks.RESULTS == []
    [logged] = [r for r in caplog.records if r.name.startswith(("im_task", "django"))]
    assert logged.name == "im_task"  # the core decides and logs, as for every adapter
    assert "No secret is configured" in logged.getMessage()
