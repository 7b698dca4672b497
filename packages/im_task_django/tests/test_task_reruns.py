"""A FAILED Django task asked for again (dead-letter replay, queue retry) runs again; a duplicate delivery does not.

Over the project served on 127.0.0.1 and a real local queue; the dead
letters land in the project's database (the default store of a Django project).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from im_task_django.djangotasks import available

if available() is None:
    pytest.skip(
        "Django's task framework is not installed (Django 6+, or pip install django-tasks)", allow_module_level=True
    )

from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from django_testproject import framework_tasks as tasks
from django_testproject.client import post_task
from im_task.dead import find_letter, replay
from im_task.reruns import RERUN_HEADER, rerun_headers
from im_task.transports import LocalTransport, RecordingTransport
from im_task_django.djangotasks import TaskResultStatus
from im_task_django.models import DeadLetterRecord, TaskResultRecord

OUTCOMES = "im_task.outcomes"


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    """No results, dead letters or recorded calls before or after each test."""
    DeadLetterRecord.objects.all().delete()
    tasks.RESULTS.clear()
    yield
    TaskResultRecord.objects.all().delete()
    DeadLetterRecord.objects.all().delete()
    tasks.RESULTS.clear()


@pytest.fixture
def local_queue(http_local_queue: LocalTransport) -> LocalTransport:
    """The local queue of conftest's ``http_local_queue``."""
    return http_local_queue


def fail_once(queue: LocalTransport, marker: Path) -> tuple[object, DeadLetterRecord]:
    """Enqueues a task that fails (FAILED, with a dead letter) until ``marker`` exists; its result and letter."""
    result = tasks.fails_until_healed.enqueue(str(marker))
    assert queue.join(timeout=30)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [letter] = DeadLetterRecord.objects.all()
    return result, letter


def outcome_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == OUTCOMES]


def test_a_replayed_failed_task_runs_again_and_its_letter_goes(
    local_queue: LocalTransport, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=OUTCOMES)
    marker = tmp_path / "healed"
    result, letter = fail_once(local_queue, marker)
    record = TaskResultRecord.objects.get(pk=result.id)
    assert (record.queue_name, record.im_task_name) == (letter.queue, letter.name)  # one thread to follow
    assert f"(result {result.id}) failed (ValueError)" in letter.error
    marker.write_text("fixed")
    replay(find_letter(letter.name, letter.queue))
    assert local_queue.join(timeout=30)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "fixed"
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"]  # the first failure is kept
    assert result.attempts == 2
    assert [("heal", str(marker))] * 2 == tasks.RESULTS
    assert not DeadLetterRecord.objects.exists()
    assert any(f"(result {result.id}): SUCCESSFUL" in line for line in outcome_lines(caplog))


def test_a_queue_retry_runs_a_failed_task_again(local_queue: LocalTransport, tmp_path: Path) -> None:
    marker = tmp_path / "healed"
    result, letter = fail_once(local_queue, marker)
    marker.write_text("fixed")
    assert local_queue.retry(letter.name, queue=letter.queue, headers=rerun_headers()) == 1
    assert local_queue.join(timeout=30)
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert not DeadLetterRecord.objects.exists()  # a retry that succeeded leaves no letter to replay twice


def test_a_replay_that_fails_again_is_failed_with_both_errors(local_queue: LocalTransport, tmp_path: Path) -> None:
    result, letter = fail_once(local_queue, tmp_path / "never")
    replay(find_letter(letter.name, letter.queue))
    assert local_queue.join(timeout=30)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert len(result.errors) == 2
    [again] = DeadLetterRecord.objects.all()
    assert again.name != letter.name  # the replay's own letter, to replay again once fixed


def test_a_duplicate_delivery_of_a_failed_task_is_skipped_and_says_so(
    server: str, recorder: RecordingTransport, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=OUTCOMES)
    marker = tmp_path / "healed"
    result = tasks.fails_until_healed.enqueue(str(marker))
    [request] = recorder.requests
    assert post_task(server, request).status == 200
    marker.write_text("fixed")
    assert post_task(server, request, retry_count=1).status == 200  # the queue delivered it twice
    stale = rerun_headers(now=time.time() - 3600)  # a mark made before the task failed
    assert post_task(server, replace(request, headers={**request.headers, **stale})).status == 200
    forged = {RERUN_HEADER: f"{time.time() + 60:.6f}.00.00"}
    assert post_task(server, replace(request, headers={**request.headers, **forged})).status == 200
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert [("heal", str(marker))] == tasks.RESULTS
    skipped = [line for line in outcome_lines(caplog) if "was not run again" in line]
    assert len(skipped) == 3
    assert f"(result {result.id}) is already FAILED" in skipped[0]
    assert not any(" ran on attempt 2" in line for line in outcome_lines(caplog))


def test_a_successful_task_is_never_run_again_even_when_asked(server: str, recorder: RecordingTransport) -> None:
    result = tasks.add.enqueue(2, 2)
    [request] = recorder.requests
    assert post_task(server, request).status == 200
    again = replace(request, headers={**request.headers, **rerun_headers()})
    assert post_task(server, again).status == 200
    assert tasks.RESULTS == [("add", 2, 2)]
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_a_locked_sqlite_database_is_waited_for(
    server: str, recorder: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite answers "database is locked" at once to a transaction that read, then writes, while another writes."""
    caplog.set_level(logging.INFO, logger="im_task.django")
    result = tasks.add.enqueue(4, 5)
    [request] = recorder.requests
    path = connections["default"].settings_dict["NAME"]
    holder = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # a write lock, as another request's transaction takes it
    holder.execute("UPDATE im_task_task_result SET priority = priority")
    release = threading.Timer(0.4, holder.execute, ("COMMIT",))
    release.start()
    try:
        assert post_task(server, request).status == 200
    finally:
        release.join()
        holder.close()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.attempts == 1, "the runner waited for the lock instead of failing the attempt"
    assert any("database is locked" in r.getMessage() for r in caplog.records if r.name == "im_task.django")


def test_the_admin_links_a_result_to_its_im_task_task_and_dead_letter(
    local_queue: LocalTransport, tmp_path: Path
) -> None:
    result, letter = fail_once(local_queue, tmp_path / "never")
    User.objects.create_superuser("admin", "admin@example.com", "an-admin-password-for-tests")
    client = Client()
    assert client.login(username="admin", password="an-admin-password-for-tests")
    try:
        listing = client.get("/admin/im_task_django/taskresultrecord/").content.decode()
        assert letter.name in listing
        page = client.get(f"/admin/im_task_django/taskresultrecord/{result.id}/change/").content.decode()
        assert f"/admin/im_task_django/deadletterrecord/{letter.pk}/change/" in page
    finally:
        User.objects.all().delete()
