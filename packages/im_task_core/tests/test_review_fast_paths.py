"""A transport's ``enqueue``, however it comes to be the one in force, sees every common call.

The common call hands the transport the fields it built (``Transport._enqueue_built``);
the recording and local transports store them without calling ``enqueue``. That
shortcut is theirs only while their own ``enqueue`` is the one a caller would reach:
an ``enqueue`` from a mixin ahead of them, one set on the class after it was made,
or one patched on the class for a test must see every task, as it did before the
shortcut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from im_task import configure, task
from im_task.transports import RecordingTransport, TaskRequest, Transport
from im_task.transports.local import LocalTransport


@task
def common(a: int, b: str = "") -> None:
    """A task function whose calls are common ones (module level, plain arguments, one queue, due now)."""


class SeeingMixin:
    """An ``enqueue`` ahead of the transport's in the method resolution order, noting every task."""

    seen: list[TaskRequest]

    def enqueue(self, request: TaskRequest) -> str:
        self.seen.append(request)
        result: str = super().enqueue(request)  # type: ignore[misc]
        return result


class MixedRecorder(SeeingMixin, RecordingTransport):
    """A recorder whose ``enqueue`` comes from a mixin: the class itself defines none."""


class MixedLocal(SeeingMixin, LocalTransport):
    """A local queue whose ``enqueue`` comes from a mixin."""


def _plan_made() -> None:
    """The first call takes the general path and makes the plan; the next ones are common calls."""
    common(0)
    plan = common._plans[0]
    assert plan is not None
    assert plan.direct is not None


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Callable[[type[LocalTransport]], LocalTransport]]:
    """Makes local queues of a given class on real SQLite files, closed after the test."""
    made: list[LocalTransport] = []

    def make(cls: type[LocalTransport]) -> LocalTransport:
        queue = cls(tmp_path / f"queue{len(made)}.sqlite3", autostart=False)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close()


def test_an_enqueue_from_a_mixin_sees_every_common_call_of_a_recorder() -> None:
    recorder = MixedRecorder()
    recorder.seen = []
    configure(transport=recorder)
    _plan_made()
    common(1, "x")
    common(2)
    assert len(recorder.seen) == 3
    assert len(recorder.requests) == 3


def test_an_enqueue_from_a_mixin_sees_every_common_call_of_a_local_queue(
    local: Callable[[type[LocalTransport]], LocalTransport],
) -> None:
    queue = local(MixedLocal)
    queue.seen = []  # type: ignore[attr-defined]
    configure(transport=queue)
    _plan_made()
    common(1, "x")
    common(2)
    assert len(queue.seen) == 3  # type: ignore[attr-defined]
    assert queue.stats().queued == 3


@contextmanager
def _class_enqueue_noted(cls: type[Transport], seen: list[TaskRequest]) -> Iterator[None]:
    """Replaces ``cls.enqueue`` (as ``mock.patch.object(cls, "enqueue")`` does) with one noting each task."""
    original: Callable[..., Any] = cls.__dict__["enqueue"]

    def enqueue(self: Transport, request: TaskRequest) -> str | None:
        seen.append(request)
        result: str | None = original(self, request)
        return result

    cls.enqueue = enqueue  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.enqueue = original  # type: ignore[method-assign]


@pytest.mark.parametrize("cls", [RecordingTransport, LocalTransport])
def test_an_enqueue_set_on_the_class_after_it_was_made_sees_every_common_call(
    cls: type[Transport], local: Callable[[type[LocalTransport]], LocalTransport]
) -> None:
    transport = local(LocalTransport) if cls is LocalTransport else RecordingTransport()
    configure(transport=transport)
    _plan_made()
    seen: list[TaskRequest] = []
    with _class_enqueue_noted(cls, seen):
        common(1, "x")
        common(2)
    assert len(seen) == 2
    common(3)  # the class's own enqueue again: the shortcut, which stores it all the same
    assert len(seen) == 2
    if isinstance(transport, LocalTransport):
        assert transport.stats().queued == 4
    else:
        assert isinstance(transport, RecordingTransport)
        assert len(transport.requests) == 4


def test_an_enqueue_set_on_a_subclass_after_it_was_made_sees_every_common_call() -> None:
    class Later(RecordingTransport):
        """A recorder subclass given its own enqueue only once made."""

    seen: list[TaskRequest] = []

    def enqueue(self: RecordingTransport, request: TaskRequest) -> str:
        seen.append(request)
        return RecordingTransport.enqueue(self, request)

    Later.enqueue = enqueue  # type: ignore[method-assign]
    recorder = Later()
    configure(transport=recorder)
    _plan_made()
    common(1)
    common(2)
    assert len(seen) == 3
    assert len(recorder.requests) == 3
