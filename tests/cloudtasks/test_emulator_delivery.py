"""End to end through gcloud-tasks-emulator: ``@task`` calls go out through CloudTasksTransport and come back over HTTP.

The emulator differs from the service (no name deduplication, no size limit,
no backoff, retry and execution counts equal, one task at a time per queue,
OIDC and routing ignored); nothing here depends on those.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from im_task_testsupport import sink
from im_task_testsupport.context import task_context
from im_task_testsupport.retried_tasks import flaky

from im_task import PermanentTaskFailure, configure, get_queue_name, task
from im_task.runtime import get_transport
from im_task.transports import CloudTasksTransport


@task
def ran(value: object) -> None:
    sink.record("ran", value)


@task
def seen(value: object, header: str = "X-AppEngine-TaskName") -> None:
    sink.record("seen", value, task_context(header))


@task
def ran_at(enqueued_at: float) -> None:
    sink.record("ran_at", enqueued_at, time.time())


@task
def gives_up() -> None:
    sink.record("gives_up")
    raise PermanentTaskFailure("not retried")


def spread_over(value: int) -> None:
    sink.record("spread", value, get_queue_name())


def of_kind(events: list[Any], kind: str) -> list[Any]:
    return [event[1:] if isinstance(event, tuple) else () for event in events if event == kind or event[0] == kind]


def test_an_app_engine_target_task_runs_with_the_queue_headers(cloud_tasks: Any, wait_for: Any) -> None:
    handle = seen("app engine")
    assert cloud_tasks.transport.http is None  # App Engine targets: relative_uri, delivered to the emulator's target

    [(kind, value, context)] = wait_for(1)
    assert (kind, value) == ("seen", "app engine")
    assert context["from_queue"] is True
    assert context["queue"] == "default"
    assert context["retry"] == 0
    assert context["task"] == handle.name
    assert context["header"] == handle.name


def test_an_http_target_task_runs_with_the_cloudtasks_headers(cloud_tasks: Any, wait_for: Any) -> None:
    transport = cloud_tasks.use(base_url=cloud_tasks.base_url)
    assert transport.http is not None

    handle = seen("http target", header="X-CloudTasks-TaskName")

    [(kind, value, context)] = wait_for(1)
    assert (kind, value) == ("seen", "http target")
    assert context["from_queue"] is True
    assert context["queue"] == "default"
    assert context["header"] == handle.name


def test_closures_and_lambdas_run(cloud_tasks: Any, wait_for: Any) -> None:
    greeting = "hello from a closure"

    def inner(suffix: str) -> None:
        sink.record("closure", f"{greeting}, {suffix}")

    task(inner)("delivered")
    task(lambda: sink.record("lambda"))()

    events = wait_for(2)
    assert sorted(map(str, events)) == sorted(map(str, [("closure", "hello from a closure, delivered"), "lambda"]))


def test_a_countdown_delays_the_task(cloud_tasks: Any, wait_for: Any) -> None:
    countdown = 2.0
    handle = ran_at.using(countdown=countdown)(time.time())
    ran("not delayed")

    events = wait_for(2)
    assert handle.eta is not None
    [(enqueued_at, ran_time)] = of_kind(events, "ran_at")
    assert ran_time - enqueued_at >= countdown - 0.01  # never early (the same clock on both sides)
    assert ran_time >= handle.eta.timestamp() - 0.01
    assert ran_time - enqueued_at < countdown + 30  # ... and not lost


def test_a_failing_task_is_retried_until_it_succeeds_and_a_permanent_failure_is_not(
    cloud_tasks: Any, wait_for: Any
) -> None:
    gives_up()
    flaky()

    wait_for(4)  # gives_up once, flaky three times (500, 408, 200)
    cloud_tasks.wait_idle()

    events = sink.events()
    assert of_kind(events, "flaky") == [(0,), (1,), (2,)]
    assert events.count("gives_up") == 1
    assert len(events) == 4


def test_tasks_spread_over_several_queues(cloud_tasks: Any, wait_for: Any) -> None:
    spread = task(spread_over, queue=["spread-a", "spread-b", "spread-c"])
    handles = [spread(i) for i in range(60)]

    events = wait_for(60)
    ran_on = dict(of_kind(events, "spread"))
    assert sorted(ran_on) == list(range(60))
    # Random choice: one queue of three missed in 60 calls has a chance of 3 * (2/3)**60, about 1e-10.
    assert {handle.queue for handle in handles} == {"spread-a", "spread-b", "spread-c"}
    assert all(ran_on[i] == handle.queue for i, handle in enumerate(handles))


def test_async_enqueue_delivers_every_task(cloud_tasks: Any, wait_for: Any) -> None:
    async def enqueue_all() -> list[Any]:
        return await asyncio.gather(*(ran.enqueue_async(f"async {i}") for i in range(20)))

    handles = asyncio.run(asyncio.wait_for(enqueue_all(), timeout=60))

    assert len({handle.name for handle in handles}) == 20
    events = wait_for(20)
    assert sorted(value for (value,) in of_kind(events, "ran")) == sorted(f"async {i}" for i in range(20))


def test_map_of_1000_tasks_delivers_every_one_once(cloud_tasks: Any, wait_for: Any) -> None:
    handles = ran.using(queue=list(cloud_tasks.queues)).map(range(1000))
    pairs = ran.starmap([("starmap 1",), ("starmap 2",)])

    assert len(handles) == 1000
    assert len(pairs) == 2
    wait_for(1002)
    cloud_tasks.wait_idle()
    values = [value for (value,) in of_kind(sink.events(), "ran")]
    assert sorted(value for value in values if isinstance(value, int)) == list(range(1000))
    assert sorted(value for value in values if isinstance(value, str)) == ["starmap 1", "starmap 2"]
    assert len(values) == 1002


def test_the_cloudtasks_setting_with_the_emulator_variable_delivers(
    cloud_tasks: Any, wait_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = cloud_tasks.emulator
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", emulator.host)
    configure(transport="cloudtasks", project=emulator.project, location=emulator.location)

    handle = seen("from settings")

    transport = get_transport()
    assert isinstance(transport, CloudTasksTransport)
    assert transport.emulator_host == emulator.host
    [(kind, value, context)] = wait_for(1)
    assert (kind, value) == ("seen", "from settings")
    assert context["task"] == handle.name
