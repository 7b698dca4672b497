"""Compatibility with im_task (Python 2) and FreshPlanet's deferred: old code keeps running, old habits fail early."""

from __future__ import annotations

import functools
import logging
import timeit
from typing import Any

import pytest
from im_task_testsupport import sink

from im_task import (
    BulkEnqueueError,
    ConfigurationError,
    EnqueueError,
    PermanentTaskFailure,
    RetryTaskException,
    TaskAlreadyExistsError,
    deferred,
    set_taskroute,
    task,
)
from im_task.decorator import TaskFunction
from im_task.transports import RecordingTransport


def add(a: int, b: int) -> None:
    sink.record("add", a + b)


def with_headers(value: int, headers: Any) -> None:
    sink.record("headers", value, headers["X-AppEngine-QueueName"])


class Counter:
    def __init__(self, start: int) -> None:
        self.start = start

    @task
    def bump(self, by: int) -> None:
        sink.record("bump", self.start + by)


class NoSignature:
    """A callable whose signature cannot be known: calls are let through unchecked."""

    __signature__ = "not a signature"

    def __call__(self, *args: Any) -> None:
        sink.record("unchecked", args)


# -- old habits fail at the call ---------------------------------------------------------------


def test_a_deferred_habit_is_an_enqueue_error_that_says_what_to_use(im_task_recorder: RecordingTransport) -> None:
    with pytest.raises(EnqueueError) as caught:
        task(add)(1, 2, _countdown=60)
    message = str(caught.value)
    assert "got an unexpected keyword argument '_countdown'" in message
    assert "add.using(countdown=60)(...)" in message
    assert "im_task.deferred.defer(add, ..., _countdown=60)" in message
    assert im_task_recorder.requests == []


@pytest.mark.parametrize(
    ("args", "kwargs", "why"),
    [
        ((1,), {}, "missing a required argument: 'b'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1, 2), {"c": 3}, "unexpected keyword argument 'c'"),
    ],
)
def test_arguments_that_do_not_fit_are_refused_before_anything_is_sent(
    im_task_recorder: RecordingTransport, args: tuple[Any, ...], kwargs: dict[str, Any], why: str
) -> None:
    with pytest.raises(EnqueueError, match=why):
        task(add)(*args, **kwargs)
    assert im_task_recorder.requests == []


def test_includeheaders_needs_a_headers_parameter(im_task_recorder: RecordingTransport) -> None:
    with pytest.raises(EnqueueError, match="must accept headers="):
        task(add, includeheaders=True)(1, 2)
    task(with_headers, includeheaders=True)(7)
    assert [r.status for r in im_task_recorder.run_all()] == [200]
    assert sink.events() == [("headers", 7, "default")]


def test_methods_are_checked_without_self(im_task_recorder: RecordingTransport) -> None:
    Counter(1).bump(2)
    with pytest.raises(EnqueueError, match="missing a required argument: 'by'"):
        Counter(1).bump()
    im_task_recorder.run_all()
    assert sink.events() == [("bump", 3)]


def test_a_callable_without_a_signature_is_not_checked(im_task_recorder: RecordingTransport) -> None:
    task(NoSignature())(1, 2, 3)
    im_task_recorder.run_all()
    assert sink.events() == [("unchecked", (1, 2, 3))]


def with_connection(func: Any) -> Any:
    """A decorator that supplies the first argument itself, keeping the name with functools.wraps."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func("connection", *args, **kwargs)

    return wrapper


@with_connection
def uses_connection(connection: str, value: int) -> None:
    sink.record(connection, value)


def test_a_wrapper_is_checked_by_its_own_signature(im_task_recorder: RecordingTransport) -> None:
    task(uses_connection)(5)  # the wrapped signature (connection, value) would refuse this call
    deferred.defer(uses_connection, 6)
    assert [r.status for r in im_task_recorder.run_all()] == [200, 200]
    assert sink.events() == [("connection", 5), ("connection", 6)]


def test_in_a_bulk_call_a_misfit_fails_its_own_call_only(im_task_recorder: RecordingTransport) -> None:
    with pytest.raises(BulkEnqueueError) as caught:
        task(add).starmap([(1, 2), (1,), (3, 4)])
    assert list(caught.value.errors) == [1]
    assert isinstance(caught.value.errors[1], EnqueueError)
    assert len(im_task_recorder.requests) == 2


def test_the_signature_is_looked_up_once(im_task_recorder: RecordingTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    import im_task.decorator

    looked_up: list[Any] = []
    original = im_task.decorator._signature_of
    monkeypatch.setattr(im_task.decorator, "_signature_of", lambda f: looked_up.append(f) or original(f))
    fn = task(add)
    for _ in range(3):
        fn(1, 2)
    fn.using(queue="other")(1, 2)  # a copy for one call site keeps it

    class Fresh:
        @task
        def bump(self, by: int) -> None: ...

    for _ in range(3):
        Fresh().bump(1)  # a method: one lookup for the method, not one per attribute access
    assert looked_up == [add, Fresh.__dict__["bump"].func]


def test_the_check_is_cheap() -> None:
    fn: TaskFunction[Any, Any] = task(add)
    fn._check_arguments((1, 2), {})  # looks the signature up
    seconds = min(timeit.repeat(lambda: fn._check_arguments((1, 2), {}), number=2000, repeat=3)) / 2000
    assert seconds < 50e-6, f"the argument check takes {seconds * 1e6:.1f} µs a call"


# -- im_task (Python 2) code keeps running --------------------------------------------------------


class FakeKey:
    """Enough of an ndb.Key for the ``parent`` option: ``kind()`` and ``id()``."""

    def kind(self) -> str:
        return "Parent"

    def id(self) -> int:
        return 1


def test_old_im_task_options_and_the_factory_form_work(im_task_recorder: RecordingTransport) -> None:
    set_taskroute("/_ah/task")
    task(add, queue="default", countdown=5, logname="sums/add", parent=FakeKey())(1, 2)
    (request,) = im_task_recorder.requests
    assert request.url == "/_ah/task/sums/add"
    assert request.schedule_time is not None
    im_task_recorder.run_all()
    assert sink.events() == [("add", 3)]
    with pytest.raises(ConfigurationError, match="parent must be a datastore key"):
        task(add, parent="Parent:1")
    assert {RetryTaskException.__module__, PermanentTaskFailure.__module__} == {"im_task.errors"}


# -- FreshPlanet: raise_if_exists ----------------------------------------------------------------


def test_raise_if_exists_false_swallows_a_taken_name_and_logs_it_at_info(
    im_task_recorder: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    strict = task(add, name="daily-report")
    lenient = task(add, name="daily-report", raise_if_exists=False)
    strict(1, 2)
    with pytest.raises(TaskAlreadyExistsError):
        strict(1, 2)
    with caplog.at_level(logging.INFO, logger="im_task"):
        handle = lenient(1, 2)
    assert (handle.name, handle.queue) == ("daily-report", "default")
    assert len(im_task_recorder.requests) == 1
    assert [r.levelname for r in caplog.records if "already exists" in r.getMessage()] == ["INFO"]
    handles = lenient.starmap([(1, 2)])  # the bulk path too
    assert [h.name for h in handles] == ["daily-report"]
    with pytest.raises(ConfigurationError, match="raise_if_exists must be True or False"):
        task(add, raise_if_exists="no")


async def _enqueue_async(fn: TaskFunction[Any, Any]) -> Any:
    return await fn.enqueue_async(1, 2)


def test_raise_if_exists_false_in_async_enqueue(im_task_recorder: RecordingTransport) -> None:
    import asyncio

    task(add, name="once-async")(1, 2)
    handle = asyncio.run(_enqueue_async(task(add, name="once-async", raise_if_exists=False)))
    assert handle.name == "once-async"
    assert len(im_task_recorder.requests) == 1


def test_freshplanet_helpers_are_where_they_were() -> None:
    from im_task import get_retry_count, is_from_task_queue, log_as_retried

    assert (is_from_task_queue(), get_retry_count()) == (False, 0)
    assert callable(log_as_retried)
