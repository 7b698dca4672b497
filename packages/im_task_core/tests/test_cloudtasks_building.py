"""The pure mappings of the Cloud Tasks transport: targets, routing defaults, retry_config, error mapping."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.api_core import exceptions as api
from google.cloud import tasks_v2

from im_task.errors import (
    ConfigurationError,
    EnqueueError,
    PermissionDeniedError,
    TaskAlreadyExistsError,
    TaskTooLargeError,
    TransientEnqueueError,
    UnknownQueueError,
)
from im_task.retry import RetryOptions
from im_task.transports import TaskRequest
from im_task.transports.cloudtasks import AppEngineRouting, EnqueueRetry, app_engine_target
from im_task.transports.cloudtasks.building import HttpTarget, build_task, default_routing, parse_target, retry_config
from im_task.transports.cloudtasks.errors import api_error_from_status, is_transient, library_error

PARENT = "projects/p/locations/l/queues/q"


@pytest.mark.parametrize(
    ("target", "routing"),
    [
        ("worker", AppEngineRouting(service="worker")),
        ("v2.worker", AppEngineRouting(service="worker", version="v2")),
        ("3.v2.worker", AppEngineRouting(service="worker", version="v2", instance="3")),
        ("service=worker", AppEngineRouting(service="worker")),
        ("version=v2", AppEngineRouting(version="v2")),
        ("service=worker, version=v2,instance=1", AppEngineRouting(service="worker", version="v2", instance="1")),
    ],
)
def test_targets_of_every_form_are_read(target: str, routing: AppEngineRouting) -> None:
    assert parse_target(target) == routing


@pytest.mark.parametrize("target", ["a.b.c.d", "v2..worker", ".", "zone=x", "service=", "service=a,service=b"])
def test_bad_targets_are_refused_naming_the_forms(target: str) -> None:
    with pytest.raises(EnqueueError, match=r"version\.service"):
        parse_target(target)


def test_app_engine_target_writes_what_parse_target_reads() -> None:
    text = app_engine_target(service="worker", instance="7")
    assert text == "service=worker,instance=7"
    assert parse_target(text) == AppEngineRouting(service="worker", instance="7")
    with pytest.raises(EnqueueError, match="needs a service"):
        app_engine_target()
    with pytest.raises(EnqueueError, match="not a valid name"):
        app_engine_target(version="v.2")


@pytest.mark.parametrize(
    ("environ", "background", "routing"),
    [
        ({}, None, AppEngineRouting()),
        ({}, "background", AppEngineRouting(service="background")),
        ({"GAE_SERVICE": "api", "GAE_VERSION": "v7"}, None, AppEngineRouting(service="api", version="v7")),
        ({"GAE_SERVICE": "api", "GAE_VERSION": "v7"}, "background", AppEngineRouting(service="api", version="v7")),
        (
            {"GAE_SERVICE": "default", "GAE_VERSION": "v7"},
            "background",
            AppEngineRouting(service="background", version="v7"),
        ),
        ({"GAE_SERVICE": "default", "GAE_VERSION": "v7"}, None, AppEngineRouting(service="default", version="v7")),
    ],
)
def test_routing_defaults_to_the_enqueuing_service_and_version(
    environ: dict[str, str], background: str | None, routing: AppEngineRouting
) -> None:
    assert default_routing(environ, background) == routing


def test_retry_options_become_the_tasks_retry_config() -> None:
    config = retry_config(
        RetryOptions(
            task_retry_limit=4, task_age_limit=600, min_backoff_seconds=1.5, max_backoff_seconds=60, max_doublings=3
        ),
        tasks_v2,
    )
    assert config.max_attempts == 5
    assert config.max_retry_duration == dt.timedelta(minutes=10)
    assert config.min_backoff == dt.timedelta(seconds=1.5)
    assert config.max_backoff == dt.timedelta(seconds=60)
    assert config.max_doublings == 3
    assert retry_config(None, tasks_v2) is None
    assert retry_config(RetryOptions(), tasks_v2) is None
    only = retry_config(RetryOptions(task_retry_limit=0), tasks_v2)
    assert only.max_attempts == 1
    assert not tasks_v2.RetryConfig.pb(only).HasField("min_backoff")  # unset fields stay the queue's


def test_reserved_headers_are_not_sent() -> None:
    request = TaskRequest(
        queue="q", url="/t", body=b"", headers={"Content-Type": "a/b", "X-AppEngine-QueueName": "x", "Host": "h"}
    )
    created = build_task(request, parent=PARENT, name=None, tasks_v2=tasks_v2)
    assert dict(created.task.app_engine_http_request.headers) == {"Content-Type": "a/b"}
    assert created.task.name == ""


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (api.AlreadyExists("x"), TaskAlreadyExistsError, "'n1'"),
        (api.Conflict("x"), TaskAlreadyExistsError, "'n1'"),  # REST's 409
        (api.NotFound("x"), UnknownQueueError, "gcloud tasks queues create q"),
        (api.PermissionDenied("x"), PermissionDeniedError, "roles/cloudtasks.enqueuer"),
        (api.Forbidden("x"), PermissionDeniedError, "roles/cloudtasks.enqueuer"),
        (api.Unauthenticated("x"), PermissionDeniedError, "roles/cloudtasks.enqueuer"),
        (api.InvalidArgument("Task size too large"), TaskTooLargeError, "too large"),
        (api.ServiceUnavailable("x"), TransientEnqueueError, "after 5 attempts"),
        (api.DeadlineExceeded("x"), TransientEnqueueError, "trying later"),
        (api.ResourceExhausted("x"), TransientEnqueueError, "trying later"),
        (api.InternalServerError("x"), TransientEnqueueError, "trying later"),
        (api.FailedPrecondition("x"), EnqueueError, "paused or disabled"),
        (api.InvalidArgument("bad field"), EnqueueError, "bad field"),
    ],
)
def test_failures_become_the_librarys_errors(exc: Exception, kind: type[EnqueueError], words: str) -> None:
    error = library_error(exc, queue="q", name="n1", parent=PARENT, attempts=5)
    assert type(error) is kind
    assert isinstance(error, EnqueueError)
    assert words in str(error)


def test_batch_item_statuses_map_like_calls() -> None:
    exc = api_error_from_status(grpc.StatusCode.NOT_FOUND.value[0], "gone")
    assert isinstance(exc, api.NotFound)
    assert isinstance(library_error(exc, queue="q", name="n", parent=PARENT, attempts=1), UnknownQueueError)
    assert is_transient(api_error_from_status(grpc.StatusCode.UNAVAILABLE.value[0], "down"))
    assert not is_transient(api_error_from_status(grpc.StatusCode.NOT_FOUND.value[0], "gone"))


def test_enqueue_retry_delays_grow_with_jitter_and_are_bounded() -> None:
    retry = EnqueueRetry(initial_backoff=1.0, multiplier=2.0, max_backoff=5.0)
    for number, bound in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
        delays = [retry.delay(number) for _ in range(50)]
        assert all(bound / 2 <= d <= bound for d in delays)
    with pytest.raises(ConfigurationError, match="attempts"):
        EnqueueRetry(attempts=0)


def test_the_request_is_what_proto_plus_would_build() -> None:
    """``build_task`` fills protobuf messages itself; they equal what the client's proto-plus classes make."""
    naive = dt.datetime(2030, 1, 2, 3, 4, 5, 678901)
    request = TaskRequest(
        queue="q",
        url="/t",
        body=b"abc",
        headers={"Content-Type": "a/b", "X-AppEngine-TaskName": "forged"},
        schedule_time=naive,
        target="v2.worker",
        dispatch_deadline=dt.timedelta(minutes=20, microseconds=5),
        retry_options=RetryOptions(task_retry_limit=2, min_backoff_seconds=1.5),
    )
    created = build_task(request, parent=PARENT, name="n1", tasks_v2=tasks_v2)
    expected = tasks_v2.CreateTaskRequest(
        parent=PARENT,
        task=tasks_v2.Task(
            name=f"{PARENT}/tasks/n1",
            app_engine_http_request=tasks_v2.AppEngineHttpRequest(
                http_method=tasks_v2.HttpMethod.POST,
                relative_uri="/t",
                headers={"Content-Type": "a/b"},
                body=b"abc",
                app_engine_routing=tasks_v2.AppEngineRouting(service="worker", version="v2"),
            ),
            schedule_time=naive.replace(tzinfo=dt.timezone.utc),
            dispatch_deadline=dt.timedelta(minutes=20, microseconds=5),
            retry_config=tasks_v2.RetryConfig(max_attempts=3, min_backoff=dt.timedelta(seconds=1.5)),
        ),
    )
    assert isinstance(created, tasks_v2.CreateTaskRequest)
    assert tasks_v2.CreateTaskRequest.pb(created) == tasks_v2.CreateTaskRequest.pb(expected)
    http = build_task(
        request,
        parent=PARENT,
        name=None,
        tasks_v2=tasks_v2,
        http=HttpTarget("https://app.example.com", "sa@p.iam", None),
    )
    assert http.task.http_request.url == "https://app.example.com/t"
    assert http.task.http_request.http_method == tasks_v2.HttpMethod.POST
    assert http.task.http_request.oidc_token.audience == "https://app.example.com"
    assert dict(http.task.http_request.headers) == {"Content-Type": "a/b"}
    assert not tasks_v2.Task.pb(http.task).HasField("app_engine_http_request")
