"""Every kind of callable survives the whole path: serialise, sign, enqueue, verify, deserialise, run.

Each test runs twice: with ``ImmediateTransport`` (the task runs inside the
call) and with ``RecordingTransport.run_all()`` (the task runs later, from
the recorded request, as a queue would deliver it). Results are recorded in
:mod:`im_task_testsupport.sink`, which travels by reference, so a test fails if a call did
not run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport import sink

from im_task import TaskFunction, configure, task
from im_task.transports import ImmediateTransport, RecordingTransport

Drain = Callable[[], None]


@pytest.fixture(params=["immediate", "recording"])
def drain(request: pytest.FixtureRequest) -> Iterator[Drain]:
    """Configures a transport; calling the result runs every task still queued, checking each answered 200."""
    if request.param == "immediate":
        immediate = ImmediateTransport()
        configure(transport=immediate)

        def check() -> None:
            assert immediate.responses
            assert all(status == 200 for _, status in immediate.responses), immediate.responses

        yield check
    else:
        recorder = RecordingTransport()
        configure(transport=recorder)

        def run_everything() -> None:
            ran = 0
            while recorder.requests:
                responses = recorder.run_all()
                assert [r.status for r in responses] == [200] * len(responses), [r.body for r in responses]
                ran += len(responses)
            assert ran

        yield run_everything


def top_level(x: int, *, y: int = 0) -> None:
    sink.record(("top_level", x, y))


@task
def decorated_top_level(x: int) -> None:
    sink.record(("decorated_top_level", x))


def apply(func: Callable[..., Any], *args: Any) -> None:
    func(*args)


class Account:
    def __init__(self, owner: str) -> None:
        self.owner = owner

    def deposit(self, amount: int) -> None:
        sink.record((self.owner, "deposit", amount))

    @task(queue="accounts")
    def withdraw(self, amount: int) -> None:
        sink.record((self.owner, "withdraw", amount))

    @classmethod
    def opened(cls, owner: str) -> None:
        sink.record((cls.__name__, "opened", owner))

    @staticmethod
    def audit(note: str) -> None:
        sink.record(("audit", note))


class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def __call__(self, name: str) -> None:
        sink.record(f"{self.greeting}, {name}")


class Created:
    def __init__(self, value: int) -> None:
        sink.record(("created", value))


def test_top_level_function(drain: Drain) -> None:
    task(top_level)(1, y=2)
    drain()
    assert sink.calls == [("top_level", 1, 2)]


def test_decorated_top_level_function(drain: Drain) -> None:
    decorated_top_level(7)
    drain()
    assert sink.calls == [("decorated_top_level", 7)]


def test_nested_function(drain: Drain) -> None:
    def nested(x: int) -> None:
        sink.record(("nested", x))

    task(nested)(3)
    drain()
    assert sink.calls == [("nested", 3)]


def test_closure(drain: Drain) -> None:
    prefix = "captured"
    items = [1, 2]

    @task
    def closure(x: int) -> None:
        sink.record((prefix, items, x))

    closure(3)
    drain()
    assert sink.calls == [("captured", [1, 2], 3)]


def test_lambda(drain: Drain) -> None:
    factor = 10
    task(lambda x: sink.record(("lambda", x * factor)))(4)
    drain()
    assert sink.calls == [("lambda", 40)]


def test_recursive_nested_function_fans_out(drain: Drain) -> None:
    @task
    def fan_out(depth: int, label: str) -> None:
        sink.record(label)
        if depth:
            for i in range(2):
                fan_out(depth - 1, f"{label}.{i}")

    fan_out(2, "r")
    drain()
    assert sorted(sink.calls) == ["r", "r.0", "r.0.0", "r.0.1", "r.1", "r.1.0", "r.1.1"]


def test_functions_passed_as_arguments(drain: Drain) -> None:
    def nested(x: int) -> None:
        sink.record(("passed nested", x))

    task(apply)(nested, 1)
    task(apply)(lambda x: sink.record(("passed lambda", x)), 2)
    task(apply)(top_level, 3)
    drain()
    assert sorted(sink.calls) == [("passed lambda", 2), ("passed nested", 1), ("top_level", 3, 0)]


def test_bound_method(drain: Drain) -> None:
    account = Account("ann")
    task(account.deposit)(5)
    drain()
    assert sink.calls == [("ann", "deposit", 5)]


def test_method_decorated_with_task_inside_a_class(drain: Drain) -> None:
    bob, cat = Account("bob"), Account("cat")
    handle = bob.withdraw(5)
    cat.withdraw(6)
    drain()
    assert handle.queue == "accounts"
    assert handle.url == f"/_ah/task/{__name__}/Account/withdraw"
    assert sink.calls == [("bob", "withdraw", 5), ("cat", "withdraw", 6)]
    assert isinstance(Account.withdraw, TaskFunction)


def test_class_and_static_methods(drain: Drain) -> None:
    task(Account.opened)("dan")
    task(Account.audit)("checked")
    drain()
    assert sink.calls == [("Account", "opened", "dan"), ("audit", "checked")]


def test_callable_object(drain: Drain) -> None:
    task(Greeter("Hello"))("world")
    drain()
    assert sink.calls == ["Hello, world"]


def test_class(drain: Drain) -> None:
    task(Created)(9)
    drain()
    assert sink.calls == [("created", 9)]


def test_builtins(drain: Drain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "made" / "by" / "a" / "task"
    task(os.makedirs)(target, exist_ok=True)
    task(print)("printed by a task")
    drain()
    assert target.is_dir()
    assert "printed by a task" in capsys.readouterr().out


def test_arguments_of_many_kinds_round_trip(drain: Drain) -> None:
    args = (None, 1.5, "text", b"\x00\xff", [1, {"a": (2, 3)}], {4, 5}, frozenset({6}), Path("/p"), Account("eve"))
    task(lambda *got: sink.record(got))(*args)
    drain()
    [got] = sink.calls
    assert got[:-1] == args[:-1]
    assert got[-1].owner == "eve"


def test_task_function_argument_is_enqueued_not_run_inline() -> None:
    """A TaskFunction given to a task is still a TaskFunction there: calling it enqueues a new task."""
    recorder = RecordingTransport()
    configure(transport=recorder)

    def nested(label: str) -> None:
        sink.record(("nested ran", label))

    def call_it(fn: TaskFunction[..., None], label: object) -> None:
        assert isinstance(fn, TaskFunction)
        sink.record(("call_it", label))
        fn(label)

    task(call_it)(decorated_top_level, 1)
    task(call_it)(task(nested, queue="inner"), "x")
    [first, second] = recorder.run_all()
    assert (first.status, second.status) == (200, 200)
    assert sink.calls == [("call_it", 1), ("call_it", "x")]
    inner = recorder.requests
    assert [r.url for r in inner] == [
        f"/_ah/task/{__name__}/decorated_top_level",
        f"/_ah/task/{__name__}/test_task_function_argument_is_enqueued_not_run_inline/nested",
    ]
    assert inner[1].queue == "inner"
    recorder.run_all()
    assert sink.calls[2:] == [("decorated_top_level", 1), ("nested ran", "x")]


def test_task_function_argument_with_immediate_transport_runs_as_its_own_task() -> None:
    immediate = ImmediateTransport()
    configure(transport=immediate)

    def call_it(fn: TaskFunction[..., None]) -> None:
        fn(2)

    task(call_it)(decorated_top_level)
    assert sink.calls == [("decorated_top_level", 2)]
    assert [request.url.rsplit("/", 1)[-1] for request, _ in immediate.responses] == ["decorated_top_level", "call_it"]
