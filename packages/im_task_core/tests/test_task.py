"""The ``@task`` decorator, ``TaskFunction``, ``.using()`` and ``TaskHandle``, seen from the queue's side."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from im_task_testsupport import sink

from im_task import (
    ConfigurationError,
    EnqueueError,
    Error,
    TaskAlreadyExistsError,
    TaskFunction,
    TaskHandle,
    TaskTooLargeError,
    configure,
    get_taskroute,
    set_taskroute,
    task,
)
from im_task.config import get_keyring
from im_task.envelope import CONTENT_TYPE, open_envelope
from im_task.retry import RetryOptions
from im_task.serialization import loads_call
from im_task.transports import RecordingTransport, TaskRequest, Transport


@pytest.fixture
def recorder() -> RecordingTransport:
    transport = RecordingTransport()
    configure(transport=transport)
    return transport


def add(a: Any, b: Any) -> None:
    sink.record(("add", a, b))


@task
def bare(x: int) -> None:
    sink.record(("bare", x))


@task(queue="mail", countdown=5)
def with_options(x: int) -> None:
    sink.record(("with_options", x))


def test_bare_decorator_enqueues_instead_of_running(recorder: RecordingTransport) -> None:
    assert isinstance(bare, TaskFunction)
    handle = bare(1)
    assert sink.calls == []
    assert isinstance(handle, TaskHandle)
    [request] = recorder.requests
    assert request.queue == "default"
    assert request.url == f"/_ah/task/{__name__}/bare"
    assert handle == TaskHandle(name=request.name, queue="default", url=request.url, eta=None)
    assert request.name
    recorder.run_all()
    assert sink.calls == [("bare", 1)]


def test_decorator_with_options(recorder: RecordingTransport) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    handle = with_options(2)
    after = dt.datetime.now(dt.timezone.utc)
    [request] = recorder.requests
    assert request.queue == handle.queue == "mail"
    assert handle.eta == request.schedule_time
    assert handle.eta is not None
    assert before + dt.timedelta(seconds=5) <= handle.eta <= after + dt.timedelta(seconds=5)
    assert handle.eta.tzinfo is not None


def test_factory_form(recorder: RecordingTransport) -> None:
    handle = task(add, queue="q")(1, 2)
    [request] = recorder.requests
    assert (handle.queue, request.queue, request.url) == ("q", "q", f"/_ah/task/{__name__}/add")
    assert sink.calls == []
    recorder.run_all()
    assert sink.calls == [("add", 1, 2)]


def test_empty_parentheses_and_factory_without_options(recorder: RecordingTransport) -> None:
    task()(add)(1, 1)
    task(add)(2, 2)
    recorder.run_all()
    assert sink.calls == [("add", 1, 1), ("add", 2, 2)]


def test_task_function_looks_like_the_function() -> None:
    """Test docstring, kept by the wrapper."""
    wrapped = task(add)
    assert wrapped.__name__ == "add"  # type: ignore[attr-defined]
    assert wrapped.__qualname__ == "add"  # type: ignore[attr-defined]
    assert wrapped.__module__ == __name__
    assert wrapped.__wrapped__ is add  # type: ignore[attr-defined]
    assert wrapped.func is add
    assert repr(wrapped) == f"<TaskFunction /_ah/task/{__name__}/add>"


def test_run_calls_the_function_inline() -> None:
    task(add).run(3, 4)
    assert sink.calls == [("add", 3, 4)]


def test_not_a_callable_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="needs a callable, not int"):
        task(42)  # type: ignore[call-overload]


def test_request_carries_every_option(recorder: RecordingTransport) -> None:
    eta = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(hours=2)
    fn = task(
        add,
        queue="q-1",
        eta=eta,
        name="task-1",
        target="worker",
        retry_options={"task_retry_limit": 4},
        headers={"X-Trace": "abc"},
        url="/custom/add",
        dispatch_deadline=120,
    )
    handle = fn(1, b=2)
    [request] = recorder.requests
    assert request == TaskRequest(
        queue="q-1",
        url="/custom/add",
        body=request.body,
        headers={"Content-Type": CONTENT_TYPE, "X-Trace": "abc"},
        name="task-1",
        schedule_time=eta,
        target="worker",
        dispatch_deadline=dt.timedelta(seconds=120),
        retry_options=RetryOptions(task_retry_limit=4),
    )
    assert handle == TaskHandle(name="task-1", queue="q-1", url="/custom/add", eta=eta)
    call = loads_call(open_envelope(request.body, get_keyring()))
    assert isinstance(call.func, TaskFunction)
    assert (call.func.func, call.args, dict(call.kwargs)) == (add, (1,), {"b": 2})
    assert call.func.options == fn.options
    assert (call.retry_limit, call.includeheaders, call.description) == (4, False, "/custom/add")


def test_default_queue_setting_is_used(recorder: RecordingTransport) -> None:
    configure(default_queue="background")
    recorder = RecordingTransport()
    configure(transport=recorder)
    task(add)(1, 2)
    assert recorder.requests[0].queue == "background"


def test_queue_list_spreads_calls_over_the_named_queues(recorder: RecordingTransport) -> None:
    fn = task(add, queue=["q-a", "q-b", "q-c"])
    queues = {fn(i, i).queue for i in range(120)}
    assert queues == {"q-a", "q-b", "q-c"}
    assert {r.queue for r in recorder.requests} == queues


def test_using_changes_options_for_one_call_site(recorder: RecordingTransport) -> None:
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    original = task(add, queue="q", eta=eta, headers={"X-A": "1"})
    changed = original.using(countdown=10, name="n-1")
    assert changed is not original
    assert (changed.options.countdown, changed.options.eta, changed.options.name) == (10.0, None, "n-1")
    assert changed.options.queue == "q"
    assert changed.options.headers == {"X-A": "1"}
    assert (original.options.eta, original.options.countdown, original.options.name) == (eta, None, None)
    back = changed.using(eta=eta)
    assert (back.options.eta, back.options.countdown) == (eta, None)
    handle = changed(1, 2)
    assert handle.name == "n-1"
    assert recorder.requests[0].schedule_time is not None


def test_using_validates() -> None:
    fn = task(add)
    with pytest.raises(ConfigurationError, match="Unknown task option"):
        fn.using(priority=1)
    with pytest.raises(ConfigurationError, match="countdown must be >= 0"):
        fn.using(countdown=-5)
    with pytest.raises(ConfigurationError, match="cannot have a name"):
        fn.using(name="x").using(transactional=True)


def test_reused_name_raises_task_already_exists(recorder: RecordingTransport) -> None:
    fn = task(add, name="only-once")
    fn(1, 2)
    with pytest.raises(TaskAlreadyExistsError, match="only-once"):
        fn(1, 2)
    assert fn.using(queue="other")(1, 2).name == "only-once"  # names are per queue


def test_too_large_raises_task_too_large() -> None:
    configure(transport=RecordingTransport(max_task_size=2000), payload_store="none")
    with pytest.raises(TaskTooLargeError):
        task(add)(b"x" * 5000, 1)


class _BrokenTransport(Transport):
    def enqueue(self, request: TaskRequest) -> str | None:
        raise RuntimeError("socket closed")


def test_a_transport_breaking_its_contract_still_raises_an_enqueue_error() -> None:
    configure(transport=_BrokenTransport())
    with pytest.raises(EnqueueError, match=r"Could not enqueue /_ah/task/.*/add on queue 'default': socket closed"):
        task(add)(1, 2)


def test_arguments_that_cannot_be_pickled_fail_at_the_call_naming_them(recorder: RecordingTransport) -> None:
    lock = threading.Lock()
    with pytest.raises(EnqueueError, match=r"argument 1 \(<unlocked _thread.lock.*\) cannot be pickled") as info:
        task(add)(1, lock)
    assert isinstance(info.value, Error)
    with pytest.raises(EnqueueError, match=r"keyword argument 'b' .* cannot be pickled"):
        task(add)(1, b=lock)
    assert recorder.requests == []


def test_a_function_that_cannot_be_pickled_fails_at_the_call_naming_it(recorder: RecordingTransport) -> None:
    lock = threading.Lock()

    def holds_lock() -> None:
        with lock:
            pass

    with pytest.raises(EnqueueError, match=r"the function cannot be pickled"):
        task(holds_lock)()
    assert recorder.requests == []


def test_route_is_fixed_when_the_task_function_is_made(recorder: RecordingTransport) -> None:
    before = task(add)
    set_taskroute("/Tasks")
    after = task(add)
    assert before.url == f"/_ah/task/{__name__}/add"
    assert after.url == f"/Tasks/{__name__}/add"
    before(1, 2)
    after(1, 2)
    assert [r.url for r in recorder.requests] == [before.url, after.url]
    assert get_taskroute() == "/Tasks"


def test_task_function_keeps_its_own_state_whatever_the_callable_carries(recorder: RecordingTransport) -> None:
    class Job:
        url = "not-a-path"
        options = "not options"

        def __call__(self, x: int) -> None:
            sink.record(("job", x))

        def run(self) -> None:
            raise AssertionError("TaskFunction.run must not be shadowed")

    job = Job()
    job.func = "not the function"  # type: ignore[attr-defined]
    fn = task(job, queue="q")
    assert fn.func is job
    assert fn.url.startswith("/_ah/task/")
    assert fn.options.queue == "q"
    fn(5)
    recorder.run_all()
    assert sink.calls == [("job", 5)]
    fn_class = task(Job)
    assert fn_class.func is Job
    fn_class.run()  # TaskFunction.run: makes a Job


def _kinds() -> list[Any]:
    return [add, len, print, max]


@pytest.mark.parametrize("func", _kinds())
def test_builtins_and_functions_get_a_url(func: Any) -> None:
    fn = task(func)
    assert fn.url.startswith("/_ah/task/")
    assert fn.url.endswith("/" + func.__name__)


def test_the_endpoint_enforces_the_retry_limit_only_without_an_age_limit(recorder: RecordingTransport) -> None:
    from im_task.config import get_keyring
    from im_task.envelope import open_envelope
    from im_task.serialization import loads_call

    task(add, retry_options={"task_retry_limit": 2})(1, 2)
    task(add, retry_options={"task_retry_limit": 2, "task_age_limit": 60})(1, 2)
    limits = [loads_call(open_envelope(r.body, get_keyring())).retry_limit for r in recorder.requests]
    assert limits == [2, None]  # with an age limit, giving up is the queue's decision (both must be reached)


def test_an_unpicklable_argument_with_a_broken_repr_is_still_an_enqueue_error(recorder: RecordingTransport) -> None:
    import threading

    class Broken:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def __repr__(self) -> str:
            raise RuntimeError("repr is broken")

    with pytest.raises(EnqueueError, match=r"argument 0 .*cannot be pickled"):
        task(add)(Broken(), 1)
