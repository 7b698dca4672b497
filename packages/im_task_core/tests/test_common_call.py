"""The common call's shortcuts keep every check: the recording transport's, the sealer's, the argument checker's.

A common call (a module-level task function, arguments of plain types, one
queue, due now) hands the transport fields it built and checked itself
(``Transport._enqueue_built``), seals its pickled arguments with a sealer
made around the call's constant parts, and checks its arguments' types in
the checker that binds them. Each shortcut must give the answer the long
way gives, or take the long way.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest

from im_task import EnqueueError, TaskAlreadyExistsError, configure, task
from im_task.config import get_keyring
from im_task.decorator import _checker_of
from im_task.envelope import Binding, TaskSealer, seal, unseal
from im_task.keys import Keyring
from im_task.serialization import loads_call
from im_task.state import STATE
from im_task.transports import RecordingTransport, TaskRequest, Transport
from im_task.transports.local import LocalTransport

KEY = b"common-call-5d1e9a3c7b2f4e6a8c0d2b4f6e8a1c3d"


@task
def common(a: int, b: str = "") -> None:
    """A task function whose calls are common ones."""


@task(name="only-once")
def named_once(a: int) -> None:
    """A task function every call of which has the same name."""


def _common_call_made(recorder: RecordingTransport) -> None:
    """Makes the plan (the first call takes the general path), so that the next call is a common one."""
    common(0)
    plan = common._plans[0]
    assert plan is not None
    assert plan.direct is not None
    recorder.clear()


def _spy_on_enqueue(transport: Transport, monkeypatch: pytest.MonkeyPatch) -> list[TaskRequest]:
    """Replaces the transport's ``enqueue`` on the instance by a spy; returns the requests it will see."""
    seen: list[TaskRequest] = []
    original = transport.enqueue

    def spy(request: TaskRequest) -> str | None:
        seen.append(request)
        return original(request)

    monkeypatch.setattr(transport, "enqueue", spy)
    return seen


def test_a_recorder_subclass_that_overrides_enqueue_sees_every_common_call() -> None:
    seen: list[TaskRequest] = []

    class Counting(RecordingTransport):
        def enqueue(self, request: TaskRequest) -> str:
            seen.append(request)
            return super().enqueue(request)

    recorder = Counting()
    configure(transport=recorder)
    _common_call_made(recorder)
    seen.clear()
    handles = [common(1, "x"), common(2)]
    assert len(seen) == 2
    assert [request.name for request in recorder.requests] == [handle.name for handle in handles]
    assert all(request.name is None for request in seen)  # as given: the transport named them


def test_a_recorder_whose_enqueue_is_replaced_sees_every_common_call(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    _common_call_made(recorder)
    seen = _spy_on_enqueue(recorder, monkeypatch)
    handle = common(3, "y")
    assert [request.queue for request in seen] == ["default"]
    assert [request.name for request in recorder.requests] == [handle.name]


def test_a_closed_recorder_refuses_the_common_call() -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    _common_call_made(recorder)
    recorder.close()
    with pytest.raises(EnqueueError, match="is closed; no task can be enqueued on it"):
        common(4)
    assert recorder.requests == []


def test_the_common_call_claims_its_name_and_a_generated_one_stays_taken() -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    named_once(1)  # the general path makes the plan and claims the name
    with pytest.raises(TaskAlreadyExistsError, match="'only-once' is already taken on queue 'default'"):
        named_once(2)  # a common call
    assert [request.name for request in recorder.requests] == ["only-once"]
    _common_call_made(recorder)
    handle = common(5)
    (request,) = recorder.requests
    assert request.name == handle.name
    assert request.name is not None
    with pytest.raises(TaskAlreadyExistsError):
        recorder.enqueue(TaskRequest(queue="default", url="/x", body=b"", name=request.name))


def test_calls_whose_queue_no_transport_accepts_are_refused_on_every_call() -> None:
    """A plan whose fields fail the transport's checks takes the general way, which refuses each call."""
    recorder = RecordingTransport()
    configure(transport=recorder)
    common(0)  # settings and keyring resolved
    settings = STATE.settings
    assert settings is not None
    STATE.settings = dataclasses.replace(settings, default_queue="bad queue")  # past the settings' validation
    for _ in range(3):
        with pytest.raises(EnqueueError, match="Bad queue name 'bad queue'"):
            common(6)
    plan = common._plans[0]
    assert plan is not None
    assert plan.direct is None
    assert [request.queue for request in recorder.requests] == ["default"]


@pytest.mark.parametrize("now", [1_790_000_000.75, 1_790_000_000.0, 0.5, -0.25])
def test_a_sealer_made_around_a_payloads_start_and_end_seals_them_byte_for_byte(now: float) -> None:
    keyring = Keyring([KEY])
    plain = TaskSealer(keyring, path="/_ah/task/m/f", queue="q", headers={"X-A": "1"}, lifetime=3600.5)
    around = TaskSealer(
        keyring, path="/_ah/task/m/f", queue="q", headers={"X-A": "1"}, lifetime=3600.5, around=(b"S%", b"E")
    )
    for envelope in (
        around.seal_now(b"middle", now),
        around.seal(b"middle", now=now),
        around.seal(b"middle", now=now, due=now + 90.5),
    ):
        opened = unseal(envelope, keyring)
        assert opened.payload == b"S%middleE"
        binding = opened.binding
        assert binding is not None
        assert seal(b"S%middleE", keyring, binding) == envelope  # byte for byte
        assert around.binding_of(envelope) == binding
    binding = unseal(around.seal_now(b"m", now), keyring).binding
    assert binding is not None
    expected = Binding.for_task(path="/_ah/task/m/f", queue="q", headers={"X-A": "1"}, lifetime=3600.5, now=now)
    assert dataclasses.replace(expected, task_id=binding.task_id) == binding
    assert unseal(plain.seal_now(b"p", now), keyring).payload == b"p"


def f_all_kinds(a: int, /, b: str, *rest: object, c: float | None = None, **more: object) -> None:
    """Every kind of parameter."""


def f_shadowing(_type: object, _plain: object = None, *_all_plain: object, type: object = None) -> None:
    """Parameters named as the checker's own globals and a builtin it uses."""


@pytest.mark.parametrize(
    ("args", "kwargs", "plain"),
    [
        ((1, "b"), {}, True),
        ((1, "b", 2.5, b"x", None, True, 1j), {"c": 1.5, "d": "e"}, True),
        (([1], "b"), {}, False),
        ((1, ["b"]), {}, False),
        ((1, "b", {"r": 1}), {}, False),
        ((1, "b"), {"c": object()}, False),
        ((1, "b"), {"d": (1,)}, False),
        ((1,), {"b": bytearray(b"x")}, False),
    ],
)
def test_the_checker_says_whether_every_argument_is_of_a_plain_type(
    args: tuple[Any, ...], kwargs: dict[str, Any], plain: bool
) -> None:
    checker = _checker_of(inspect.signature(f_all_kinds))
    assert checker is not None
    assert checker(*args, **kwargs) is plain


def test_the_checker_of_parameters_named_as_its_globals_checks_their_values() -> None:
    checker = _checker_of(inspect.signature(f_shadowing))
    assert checker is not None
    assert checker(1, "a", 2, 3, type=None) is True
    assert checker([1]) is False
    assert checker(1, 2, 3, [4]) is False
    assert checker(1, type=int) is False  # a class is no plain value
    with pytest.raises(TypeError):
        checker(1, nope=2)


def test_calls_read_back_the_same_whichever_way_they_travel(im_task_recorder: RecordingTransport) -> None:
    common(0)
    common(1, "a")
    common(2, b"not a str")  # type: ignore[arg-type]  # plain: the common call, pickled the same way
    common([3], "a")  # type: ignore[arg-type]  # not plain: the general pickler
    payloads = [unseal(request.body, get_keyring()).payload for request in im_task_recorder.requests]
    calls = [loads_call(payload) for payload in payloads if isinstance(payload, bytes)]
    assert [(call.args, call.kwargs) for call in calls] == [
        ((0,), {}),
        ((1, "a"), {}),
        ((2, b"not a str"), {}),
        (([3], "a"), {}),
    ]


def test_a_local_queue_subclass_that_overrides_enqueue_sees_every_common_call(tmp_path: Path) -> None:
    seen: list[TaskRequest] = []

    class Counting(LocalTransport):
        def enqueue(self, request: TaskRequest) -> str:
            seen.append(request)
            return super().enqueue(request)

    with Counting(tmp_path / "queue.sqlite3", autostart=False) as queue:
        configure(transport=queue)
        common(0)
        common(1, "x")
        assert len(seen) == 2
        assert queue.stats().queued == 2


def test_a_local_queue_takes_the_common_call_unchecked_but_a_spy_or_its_closing_sees_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = LocalTransport(tmp_path / "queue.sqlite3", autostart=False)
    configure(transport=queue)
    common(0)
    first = common(1, "x")  # a common call: stored, named by the queue
    assert queue.stats().queued == 2
    assert first.name in {info.name for info in queue.tasks()}
    seen = _spy_on_enqueue(queue, monkeypatch)
    common(2)
    assert len(seen) == 1
    monkeypatch.undo()
    queue.close()
    with pytest.raises(EnqueueError, match="closed"):
        common(3)
