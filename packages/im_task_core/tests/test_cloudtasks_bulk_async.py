"""Bulk and async enqueue on Cloud Tasks: ``BatchCreateTasks``, its fallback, and the async client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from im_task_testsupport.cloudtasks_server import FakeCloudTasks
from im_task_testsupport.cloudtasks_transports import LOCATION, PROJECT, transport_for

from im_task import configure, task
from im_task.errors import (
    BulkEnqueueError,
    EnqueueError,
    PermissionDeniedError,
    TaskAlreadyExistsError,
    TaskTooLargeError,
    TransientEnqueueError,
    UnknownQueueError,
)
from im_task.transports import CloudTasksTransport, TaskRequest


def request(queue: str = "default", name: str | None = None, body: bytes = b"payload") -> TaskRequest:
    return TaskRequest(queue=queue, url="/_ah/task/app/work", body=body, name=name)


@pytest.fixture
def servers() -> Iterator[Callable[..., FakeCloudTasks]]:
    """Starts fake Cloud Tasks servers with the given options; stops them after the test, failed or not."""
    started: list[FakeCloudTasks] = []

    def start(**options: Any) -> FakeCloudTasks:
        server = FakeCloudTasks(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def batch_sizes(server: FakeCloudTasks) -> list[tuple[str, int]]:
    return [(r.parent.rsplit("/", 1)[-1], len(r.requests)) for r in server.requests("BatchCreateTasks")]


# -- BatchCreateTasks ----------------------------------------------------------------


def test_bulk_goes_through_batches_of_100_of_one_queue(servers: Callable[..., FakeCloudTasks]) -> None:
    server = servers()
    transport = transport_for(server)
    requests = [request("a") for _ in range(230)] + [request("b") for _ in range(20)] + [request("a")]
    results = transport.enqueue_many(requests)
    assert batch_sizes(server) == [("a", 100), ("a", 100), ("a", 31), ("b", 20)]
    assert server.requests("CreateTask") == []
    assert all(isinstance(r, str) for r in results)
    created = {t.name.rsplit("/", 1)[-1]: t.name.split("/")[-3] for t in server.created()}
    assert [created[str(r)] for r in results] == [r.queue for r in requests]  # in order, each in its queue
    transport.close()


def test_a_batch_reports_which_items_failed(servers: Callable[..., FakeCloudTasks]) -> None:
    server = servers()
    transport = transport_for(server)
    transport.enqueue(request(name="taken"))
    server.fail_task("refused", grpc.StatusCode.PERMISSION_DENIED)
    results = transport.enqueue_many(
        [
            request(name="first"),
            request(name="taken"),
            request(body=b"x" * 200_000),
            request(name="refused"),
            request(name="Bad name!"),
            request(),
        ]
    )
    assert results[0] == "first"
    assert isinstance(results[1], TaskAlreadyExistsError)
    assert isinstance(results[2], TaskTooLargeError)
    assert isinstance(results[3], PermissionDeniedError)
    assert isinstance(results[4], EnqueueError)
    assert isinstance(results[5], str)
    (batch,) = server.requests("BatchCreateTasks")
    assert len(batch.requests) == 4  # the too large and the misnamed ones were not sent
    assert {t.name.rsplit("/", 1)[-1] for t in server.created()} == {"taken", "first", str(results[5])}
    transport.close()


def test_a_retried_batch_counts_already_existing_items_as_created(servers: Callable[..., FakeCloudTasks]) -> None:
    server = servers()
    transport = transport_for(server)
    server.fail("BatchCreateTasks", grpc.StatusCode.UNAVAILABLE, after_create=True)
    results = transport.enqueue_many([request(name="one"), request()])
    first, second = server.requests("BatchCreateTasks")
    assert first.request_id == second.request_id != ""
    assert [r.task.name for r in first.requests] == [r.task.name for r in second.requests]
    assert results[0] == "one"
    assert isinstance(results[1], str)
    assert len(server.created()) == 2
    transport.close()


def test_a_batch_operation_is_polled_until_done(servers: Callable[..., FakeCloudTasks]) -> None:
    server = servers(operation_polls=2)
    transport = transport_for(server)
    results = transport.enqueue_many([request() for _ in range(3)])
    assert all(isinstance(r, str) for r in results)
    assert len(server.requests("GetOperation")) == 2
    transport.close()


@pytest.mark.parametrize(
    ("queues", "code", "error"),
    [
        (["default"], None, UnknownQueueError),
        (None, grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (None, grpc.StatusCode.UNAVAILABLE, TransientEnqueueError),
    ],
)
def test_a_batch_that_fails_as_a_whole_fails_each_item(
    servers: Callable[..., FakeCloudTasks], queues: list[str] | None, code: grpc.StatusCode | None, error: type
) -> None:
    server = servers(queues=queues)
    if code is not None:
        server.fail("BatchCreateTasks", code, times=10)
    transport = transport_for(server)
    results = transport.enqueue_many([request("other"), request("other")])
    assert [type(r) for r in results] == [error, error]
    transport.close()


def test_map_uses_batches_and_reports_failed_calls(servers: Callable[..., FakeCloudTasks]) -> None:
    server = servers()
    configure(transport=transport_for(server))
    server.fail_task("call-1", grpc.StatusCode.PERMISSION_DENIED)
    handles = task(lambda x: x).map(range(5))
    assert len(handles) == 5
    assert batch_sizes(server) == [("default", 5)]
    with pytest.raises(BulkEnqueueError) as raised:
        task(lambda x: x, name="call-1").map([1])
    assert isinstance(raised.value.errors[0], PermissionDeniedError)


# -- the fallback when BatchCreateTasks is not implemented (the emulator) -----------------


def test_without_batches_tasks_are_created_with_bounded_concurrency(servers: Callable[..., FakeCloudTasks]) -> None:
    server = servers(batch=False, create_delay=0.05)
    transport = transport_for(server, concurrency=3)
    server.fail_task("refused", grpc.StatusCode.PERMISSION_DENIED)
    results = transport.enqueue_many([request() for _ in range(11)] + [request(name="refused")])
    assert all(isinstance(r, str) for r in results[:11])
    assert isinstance(results[11], PermissionDeniedError)
    assert len(server.created()) == 11
    assert 2 <= server.max_in_flight <= 3
    assert len(server.requests("BatchCreateTasks")) == 1
    transport.enqueue_many([request(), request()])
    assert len(server.requests("BatchCreateTasks")) == 1  # known to be missing: not asked again
    assert len(server.created()) == 13
    transport.close()


# -- async ---------------------------------------------------------------------------------


def test_enqueue_async_uses_the_async_client(servers: Callable[..., FakeCloudTasks]) -> None:
    server = servers()
    transport = transport_for(server)

    async def main() -> tuple[list[str | None], Any]:
        names = await asyncio.gather(*(transport.enqueue_async(request()) for _ in range(5)))
        return names, transport._async_client()

    names, first_client = asyncio.run(main())
    assert len(set(names)) == 5
    assert len(server.created()) == 5
    assert type(first_client).__name__ == "CloudTasksAsyncClient"
    assert transport._clients.peek() is None  # the synchronous client was never made
    _, second_client = asyncio.run(main())
    assert second_client is not first_client  # a new event loop has its own channel
    transport.close()


def test_enqueue_async_retries_safely_and_maps_errors(servers: Callable[..., FakeCloudTasks]) -> None:
    server = servers()
    transport = transport_for(server)

    async def main() -> None:
        server.fail("CreateTask", grpc.StatusCode.UNAVAILABLE, after_create=True)
        assert await transport.enqueue_async(request(name="lost-answer")) == "lost-answer"
        with pytest.raises(TaskAlreadyExistsError):
            await transport.enqueue_async(request(name="lost-answer"))
        server.fail("CreateTask", grpc.StatusCode.PERMISSION_DENIED)
        with pytest.raises(PermissionDeniedError):
            await transport.enqueue_async(request())
        with pytest.raises(TaskTooLargeError):
            await transport.enqueue_async(request(body=b"x" * 200_000))

    asyncio.run(main())
    assert len(server.requests("CreateTask")) == 4
    transport.close()


def test_the_task_functions_enqueue_async_reaches_cloud_tasks(servers: Callable[..., FakeCloudTasks]) -> None:
    server = servers()
    configure(transport=transport_for(server))
    work = task(lambda x: x, queue="async-q")
    handle = asyncio.run(work.enqueue_async(1))
    (created,) = server.created()
    assert created.name.endswith(f"/queues/async-q/tasks/{handle.name}")


def test_enqueue_async_over_rest_runs_in_a_thread(servers: Callable[..., FakeCloudTasks]) -> None:
    server = servers(rest=True)
    transport = CloudTasksTransport(
        PROJECT, LOCATION, emulator_host=server.rest_endpoint.removeprefix("http://"), transport="rest", environ={}
    )
    assert asyncio.run(transport.enqueue_async(request(name="rest-async"))) == "rest-async"
    assert [c.protocol for c in server.calls] == ["rest"]
    transport.close()
