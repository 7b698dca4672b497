"""Copies made with ``.using()`` and decorated methods travel by reference, not as copies of their module."""

from __future__ import annotations

import pickle

from im_task_testsupport import sink

import core_reference_tasks
from im_task import configure
from im_task.config import get_keyring
from im_task.envelope import open_envelope
from im_task.serialization import loads_call
from im_task.transports import RecordingTransport


def _run_all(recorder: RecordingTransport) -> list[int]:
    return [response.status for response in recorder.run_all()]


def test_a_using_copy_of_a_module_level_task_is_pickled_by_reference() -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    copy = core_reference_tasks.guarded.using(queue="other", countdown=3)

    copy(7)  # would fail with "cannot pickle '_thread.lock'" if the function travelled by value

    request = recorder.requests[0]
    assert request.queue == "other"
    assert _run_all(recorder) == [200]
    assert sink.calls == [("guarded", 7)]


def test_an_unpickled_using_copy_keeps_its_own_options() -> None:
    copy = core_reference_tasks.guarded.using(queue="other")
    restored = pickle.loads(pickle.dumps(copy))
    assert restored.options.queue == "other"
    assert restored.func is core_reference_tasks.guarded.func
    assert pickle.loads(pickle.dumps(core_reference_tasks.guarded)) is core_reference_tasks.guarded


def test_a_decorated_method_of_an_object_is_pickled_by_reference() -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)

    core_reference_tasks.Counter("apples").bump(2)

    call = loads_call(open_envelope(recorder.requests[0].body, get_keyring()))
    assert recorder.requests[0].queue == "counters"
    assert call.func.func.__self__.name == "apples"
    assert _run_all(recorder) == [200]
    assert sink.calls == [("bump", "apples", 2)]


def test_a_using_copy_of_a_decorated_method_keeps_its_options() -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)

    core_reference_tasks.Counter("pears").bump.using(queue="fruit")(5)

    assert recorder.requests[0].queue == "fruit"
    assert _run_all(recorder) == [200]
    assert sink.calls == [("bump", "pears", 5)]
