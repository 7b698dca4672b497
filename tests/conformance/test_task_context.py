"""What a running task sees: the context helpers, ``includeheaders``, and both header families.

A task sees the queue's headers and its own, given at enqueue and signed
with its envelope; never a header the caller added.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest
from conformance_support import Served, enqueue
from im_task_testsupport import sink as conformance_recorder
from im_task_testsupport.context import task_context

from im_task import (
    log_as_retried,
    task,
)
from im_task.headers import APPENGINE, CLOUDTASKS

TASK_LOGGER = "conformance.tasks"

# Each family as a queue sends it: Cloud Tasks gives full resource names to HTTP targets.
FAMILIES = {
    "appengine": (APPENGINE, "mail", "t-context"),
    "cloudtasks": (
        CLOUDTASKS,
        "projects/p/locations/l/queues/mail",
        "projects/p/locations/l/queues/mail/tasks/t-context",
    ),
}


@task
def observe() -> None:
    conformance_recorder.record(task_context(header="x-custom-header"))
    log_as_retried("observed by the conformance suite", logger=logging.getLogger(TASK_LOGGER))


@task(includeheaders=True)
def with_headers(label: str, *, headers: Mapping[str, str]) -> None:
    conformance_recorder.record(
        {
            "label": label,
            "is_mapping": isinstance(headers, Mapping),
            "custom": headers["X-Custom-Header"],
            "custom_lower": headers["x-custom-header"],
            "content_type": headers.get("content-type"),
            "caller_only": headers.get("X-Caller-Only"),
            "appengine_retry": headers.get("X-AppEngine-TaskRetryCount"),
            "cloudtasks_retry": headers.get("x-cloudtasks-taskretrycount"),
        }
    )


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_context_helpers_describe_the_running_task(
    served_app: Served, family: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix, queue_name, task_name = FAMILIES[family]
    reply = served_app.deliver(
        enqueue(observe.using(queue="mail", headers={"X-Custom-Header": "custom value"})),
        family=prefix,
        queue_name=queue_name,
        task_name=task_name,
        retry_count=2,
        execution_count=1,
        extra_headers={"X-Custom-Header": "the caller's value"},
    )
    assert reply.status == 200
    assert conformance_recorder.events() == [
        {
            "from_queue": True,
            "retry": 2,
            "executions": 1,
            "task": "t-context",
            "queue": "mail",
            "header": "custom value",
        }
    ]
    [logged] = [record for record in caplog.records if record.name == TASK_LOGGER]
    assert logged.levelno == logging.ERROR  # retry 2 logs at ERROR


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_includeheaders_passes_the_request_headers(served_app: Served, family: str) -> None:
    prefix, queue_name, task_name = FAMILIES[family]
    reply = served_app.deliver(
        enqueue(with_headers.using(queue="mail", headers={"X-Custom-Header": "custom value"}), "hello"),
        family=prefix,
        queue_name=queue_name,
        task_name=task_name,
        retry_count=4,
        extra_headers={"X-Custom-Header": "the caller's value", "X-Caller-Only": "dropped"},
    )
    assert reply.status == 200
    [seen] = conformance_recorder.events()
    assert seen == {
        "label": "hello",
        "is_mapping": True,
        "custom": "custom value",
        "custom_lower": "custom value",
        "content_type": "application/octet-stream",
        "caller_only": None,
        "appengine_retry": "4" if prefix == APPENGINE else None,
        "cloudtasks_retry": "4" if prefix == CLOUDTASKS else None,
    }
