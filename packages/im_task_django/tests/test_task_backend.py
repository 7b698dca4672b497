"""Django's task framework on im-task (ImTaskBackend), end to end over a real WSGI server and the local queue."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from im_task_django.djangotasks import available

if available() is None:
    pytest.skip(
        "Django's task framework is not installed (Django 6+, or pip install django-tasks)", allow_module_level=True
    )

from django.core import checks
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from django_testproject import framework_tasks as tasks
from django_testproject.client import post_task
from im_task import EnqueueError, configure
from im_task.endpoints import handle_request
from im_task.transports import ImmediateTransport, LocalTransport, RecordingTransport, Transport
from im_task.transports.base import TaskRequest
from im_task_django.backends import ImTaskBackend
from im_task_django.djangotasks import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from im_task_django.models import OutboxTask, TaskResultRecord
from im_task_django.runner import run_django_task

BACKEND = "im_task_django.backends.ImTaskBackend"


@pytest.fixture(autouse=True)
def clean_results() -> Iterator[None]:
    tasks.RESULTS.clear()
    yield
    TaskResultRecord.objects.all().delete()
    tasks.RESULTS.clear()


@pytest.fixture
def local_queue(http_local_queue: LocalTransport) -> LocalTransport:
    """The local queue of conftest's ``http_local_queue``."""
    return http_local_queue


@pytest.fixture
def signals() -> Iterator[list[tuple[str, str, str]]]:
    """(signal, result id, status) for each of Django's task signals sent, in order."""
    seen: list[tuple[str, str, str]] = []

    def receiver(name: str) -> Any:
        def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
            assert sender is ImTaskBackend
            seen.append((name, task_result.id, str(task_result.status.value)))

        return receive

    receivers = {signal: receiver(name) for signal, name in _SIGNALS}
    for signal, function in receivers.items():
        signal.connect(function)
    yield seen
    for signal, function in receivers.items():
        signal.disconnect(function)


_SIGNALS = ((task_enqueued, "enqueued"), (task_started, "started"), (task_finished, "finished"))


def test_enqueue_runs_the_task_and_keeps_its_result(local_queue: LocalTransport) -> None:
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at is not None
    assert local_queue.join(timeout=30)
    assert tasks.RESULTS == [("add", 2, 3)]
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.args == [2, 3]
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert result.attempts == 1
    assert result.errors == []
    fetched = tasks.add.get_result(result.id)
    assert (fetched.id, fetched.return_value, fetched.worker_ids) == (result.id, 5, result.worker_ids)
    assert asyncio.run(tasks.add.aget_result(result.id)).return_value == 5


def test_the_task_goes_to_its_queue_through_the_task_endpoint(recorder: RecordingTransport) -> None:
    result = tasks.send_email.enqueue("ada@example.com", subject="hi")
    [request] = recorder.requests
    assert request.queue == "emails"
    assert request.url.endswith("/django/django_testproject.framework_tasks.send_email")
    recorder.run_all()
    assert tasks.send_email.get_result(result.id).return_value == {"to": "ada@example.com", "subject": "hi"}
    assert tasks.send_email.using(queue_name="default").enqueue("b@example.com", subject="x").task.queue_name == (
        "default"
    )
    assert recorder.requests[-1].queue == "default"


def test_run_after_is_the_schedule_time(recorder: RecordingTransport, local_queue: LocalTransport) -> None:
    when = timezone.now() + dt.timedelta(minutes=5)
    configure(transport=recorder)
    tasks.add.using(run_after=when).enqueue(1, 1)
    assert recorder.requests[0].schedule_time == when
    configure(transport=local_queue)
    soon = timezone.now() + dt.timedelta(seconds=1.5)
    result = tasks.add.using(run_after=soon).enqueue(1, 2)
    assert local_queue.join(timeout=0.5) is True  # nothing is due yet
    assert tasks.RESULTS == []
    assert local_queue.join(timeout=30, scheduled=True)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.started_at >= soon


def test_a_failing_task_is_recorded_failed_and_not_retried(
    local_queue: LocalTransport, signals: list[tuple[str, str, str]]
) -> None:
    result = tasks.explode.enqueue("boom")
    assert local_queue.join(timeout=30)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 1  # a FAILED result is final: the queue was told not to retry
    [error] = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "ValueError: boom" in error.traceback
    assert result.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert [name for name, _, _ in signals] == ["enqueued", "started", "finished"]
    assert signals[-1] == ("finished", result.id, "FAILED")


def test_a_return_value_that_is_not_json_fails_the_task(recorder: RecordingTransport) -> None:
    result = tasks.unserialisable.enqueue()
    recorder.run_all()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "builtins.TypeError"


def test_context_attempt_counts_the_queue_s_attempts(local_queue: LocalTransport) -> None:
    result = tasks.flaky.enqueue(2)  # asks for a retry twice (SingularTaskFailure), then succeeds
    assert local_queue.join(timeout=30, scheduled=True)  # retries included
    assert tasks.RESULTS == [("flaky", 1), ("flaky", 2), ("flaky", 3)]
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 3, "result_id": result.id}
    assert result.attempts == 3
    assert [e.exception_class_path for e in result.errors] == ["im_task.errors.SingularTaskFailure"] * 2


def test_an_attempt_that_never_reached_the_runner_still_counts(server: str, recorder: RecordingTransport) -> None:
    result = tasks.flaky.enqueue(0)
    [request] = recorder.requests
    answer = post_task(server, request, retry_count=2)  # two deliveries before this one were lost
    assert answer.status == 200
    result.refresh()
    assert result.return_value["attempt"] == 3
    assert result.worker_ids[:2] == ["", ""]
    assert result.worker_ids[2]


def test_async_tasks_run_to_completion(local_queue: LocalTransport) -> None:
    result = asyncio.run(tasks.async_double.aenqueue(21))
    assert local_queue.join(timeout=30)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
    assert tasks.RESULTS == [("async", 21)]


def test_signals_follow_the_task(local_queue: LocalTransport, signals: list[tuple[str, str, str]]) -> None:
    result = tasks.add.enqueue(4, 5)
    assert local_queue.join(timeout=30)
    assert signals == [
        ("enqueued", result.id, "READY"),
        ("started", result.id, "RUNNING"),
        ("finished", result.id, "SUCCESSFUL"),
    ]


def test_a_task_enqueued_in_a_transaction_is_sent_after_the_commit(
    recorder: RecordingTransport, signals: list[tuple[str, str, str]]
) -> None:
    with transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        assert recorder.requests == []
        assert signals == []  # task_enqueued waits for the commit too
        assert OutboxTask.objects.count() == 1
    assert len(recorder.requests) == 1
    assert recorder.requests[0].name.startswith("outbox-")
    assert signals == [("enqueued", result.id, "READY")]
    recorder.run_all()
    assert tasks.add.get_result(result.id).return_value == 3


def test_a_rolled_back_task_is_never_sent_and_has_no_result(
    recorder: RecordingTransport, signals: list[tuple[str, str, str]]
) -> None:
    def work() -> str:
        with transaction.atomic():
            result = tasks.add.enqueue(1, 2)
            raise RuntimeError(result.id)

    with pytest.raises(RuntimeError) as raised:
        work()
    assert recorder.requests == []
    assert signals == []
    assert not OutboxTask.objects.exists()
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(str(raised.value))


def test_on_commit_over_the_local_queue(local_queue: LocalTransport) -> None:
    with transaction.atomic():
        result = tasks.add.enqueue(3, 4)
    assert local_queue.join(timeout=30)
    assert tasks.add.get_result(result.id).return_value == 7


def test_enqueue_on_commit_off_sends_at_once(recorder: RecordingTransport) -> None:
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "OPTIONS": {"ENQUEUE_ON_COMMIT": False}}}):
        with transaction.atomic():
            tasks.add.enqueue(1, 2)
            assert len(recorder.requests) == 1
        assert not OutboxTask.objects.exists()


def test_without_kept_results(recorder: RecordingTransport, signals: list[tuple[str, str, str]]) -> None:
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "OPTIONS": {"KEEP_RESULTS": False}}}):
        backend = task_backends["default"]
        assert backend.supports_get_result is False
        result = tasks.add.enqueue(2, 2)
        recorder.run_all()
        with pytest.raises(NotImplementedError, match="KEEP_RESULTS"):
            tasks.add.get_result(result.id)
    assert tasks.RESULTS == [("add", 2, 2)]
    assert not TaskResultRecord.objects.exists()
    assert [status for _, _, status in signals] == ["READY", "RUNNING", "SUCCESSFUL"]


def test_a_duplicate_delivery_does_not_run_a_finished_task_again(server: str, recorder: RecordingTransport) -> None:
    result = tasks.add.enqueue(1, 1)
    [request] = recorder.requests
    assert post_task(server, request).status == 200
    assert post_task(server, request, retry_count=1).status == 200  # the queue delivered it twice
    assert tasks.RESULTS == [("add", 1, 1)]
    result.refresh()
    assert result.attempts == 1


def test_the_endpoint_refuses_a_forged_django_task(server: str, recorder: RecordingTransport) -> None:
    tasks.add.enqueue(1, 1)
    [request] = recorder.requests
    forged = TaskRequest(queue=request.queue, url=request.url, body=request.body[:-1] + b"x", headers=request.headers)
    assert post_task(server, forged).status == 403
    assert tasks.RESULTS == []


def test_a_task_that_cannot_be_found_again_fails_to_start(recorder: RecordingTransport) -> None:
    result_id = str(uuid.uuid4())
    spec = {
        "version": 1,
        "backend": "default",
        "task": "django_testproject.framework_tasks.gone",
        "id": result_id,
        "queue_name": "default",
        "priority": 0,
        "takes_context": False,
        "run_after": None,
        "enqueued_at": timezone.now().isoformat(),
        "args": [],
        "kwargs": {},
        "results": True,
    }
    run_django_task(spec)
    recorder.run_all()
    record = TaskResultRecord.objects.get(pk=result_id)
    assert record.status == "FAILED"
    assert record.errors[0]["exception_class_path"] == "builtins.ImportError"


def test_arguments_must_be_json(recorder: RecordingTransport) -> None:
    with pytest.raises(TypeError, match=r"JSON arguments.*@task"):
        tasks.add.enqueue({1, 2}, 3)
    assert recorder.requests == []
    assert not TaskResultRecord.objects.exists()


def test_a_task_must_be_found_again_by_its_module_path(recorder: RecordingTransport) -> None:
    with pytest.raises(InvalidTask, match="does not lead back to this task"):
        tasks.misnamed.enqueue()
    assert recorder.requests == []


def test_a_refused_task_leaves_no_result() -> None:
    class QueueDown(Transport):
        def enqueue(self, request: TaskRequest) -> str | None:
            raise EnqueueError("queue unreachable")

    configure(transport=QueueDown())
    with pytest.raises(EnqueueError, match="unreachable"):
        tasks.add.enqueue(1, 2)
    assert not TaskResultRecord.objects.exists()


def test_the_immediate_transport_runs_the_task_inside_enqueue() -> None:
    configure(transport=ImmediateTransport(handle_request))
    result = tasks.explode.enqueue("inline")  # a FAILED result is not raised, as Django's ImmediateBackend
    result.refresh()
    assert result.status == TaskResultStatus.FAILED


def test_unknown_results() -> None:
    backend = task_backends["default"]
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(str(uuid.uuid4()))
    with pytest.raises(TaskResultDoesNotExist, match="UUID"):
        backend.get_result("not-a-uuid")


def test_priority_is_refused() -> None:
    assert task_backends["default"].supports_priority is False
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=10)


def test_queues_are_checked() -> None:
    with pytest.raises(InvalidTask, match="not valid"):
        tasks.add.using(queue_name="unknown")


def test_check_reports_bad_options_and_queues() -> None:
    tasks_setting = {
        "default": {"BACKEND": BACKEND},
        "bad": {
            "BACKEND": BACKEND,
            "QUEUES": ["default", "under_score"],
            "OPTIONS": {"ENQUEUE_ON_COMIT": True, "KEEP_RESULTS": "yes", "TASK_OPTIONS": {"queue": "x"}},
        },
    }
    with override_settings(TASKS=tasks_setting):
        messages = checks.run_checks()
        ours = [m for m in messages if m.id and m.id.startswith("im_task.E10")]
        text = " ".join(m.msg for m in ours)
        assert {m.id for m in ours} == {"im_task.E101", "im_task.E102"}
        assert "ENQUEUE_ON_COMIT" in text
        assert "ENQUEUE_ON_COMMIT" in text  # the closest key
        assert "must be True or False" in text
        assert "'queue'" in text
        assert "under_score" in text
        with pytest.raises(InvalidTaskBackend, match="ENQUEUE_ON_COMIT"):
            tasks.add.using(backend="bad")
        assert list(task_backends["default"].check()) == []


def test_check_reports_the_app_missing() -> None:
    backend = ImTaskBackend("other", {})
    with override_settings(INSTALLED_APPS=["django_testproject"]):
        [message] = list(backend.check())
    assert message.id == "im_task.E103"
    assert "INSTALLED_APPS" in message.msg


@pytest.mark.skipif(available() != "django_tasks", reason="the django-tasks backport is not the framework in use")
def test_check_warns_when_the_backport_app_is_missing() -> None:
    from im_task_django.checks import check_task_framework

    assert check_task_framework() == []
    with override_settings(INSTALLED_APPS=["im_task_django", "django_testproject"]):
        [message] = check_task_framework()
    assert message.id == "im_task.W101"
    assert "'django_tasks'" in message.hint
