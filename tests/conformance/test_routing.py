"""Where tasks are served: each at its own URL, any depth under the route, a route set with ``set_taskroute``.

A task's envelope is bound to its own URL (see :mod:`im_task.envelope`): the
same envelope POSTed to any other path, under the route or not, runs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conformance_support import Served, enqueue
from im_task_testsupport import sink as conformance_recorder

from im_task import get_taskroute, task
from im_task.routing import DEFAULT_TASKROUTE


def record_path(label: str) -> None:
    conformance_recorder.record("ran", label)


@pytest.mark.parametrize(
    "suffix",
    ["/m", "/module/function", "/a/b/c/d/e/f/g/h", "/pkg.mod/Outer/inner", "/under_score/dash-ed/x~y"],
)
def test_a_task_at_any_depth_under_the_route_is_served(served_app: Served, suffix: str) -> None:
    request = enqueue(task(record_path, url=DEFAULT_TASKROUTE + suffix), suffix)
    assert request.url == DEFAULT_TASKROUTE + suffix
    reply = served_app.deliver(request)
    assert reply.status == 200
    assert conformance_recorder.events() == [("ran", suffix)]


@pytest.mark.parametrize("suffix", ["/m", "/other/function", "/test_routing/record_path/x"])
def test_a_task_delivered_under_another_path_of_the_route_is_403(served_app: Served, suffix: str) -> None:
    request = enqueue(task(record_path), "replayed")
    reply = served_app.deliver(request, path=DEFAULT_TASKROUTE + suffix)
    assert reply.status == 403
    assert conformance_recorder.events() == []


@pytest.mark.parametrize("path", ["/elsewhere/m/f", "/_ah/taskx/m/f", "/_ah/tas/m/f", "/_AH/TASK/m/f"])
def test_paths_outside_the_route_are_not_served(served_app: Served, path: str) -> None:
    reply = served_app.deliver(enqueue(task(record_path), path), path=path)
    assert reply.status == 404
    assert conformance_recorder.events() == []


def test_a_route_set_with_set_taskroute_is_served(serve: Callable[..., Served]) -> None:
    served = serve("/Internal/Tasks")
    assert get_taskroute() == "/Internal/Tasks"
    custom = task(record_path)  # made after set_taskroute, as at start-up
    assert custom.url.startswith("/Internal/Tasks/")
    request = enqueue(custom, "custom")

    assert served.deliver(request).status == 200
    assert served.deliver(request, path="/Internal/Tasks/a/b/c").status == 403  # not the task's own URL
    assert conformance_recorder.events() == [("ran", "custom")]

    for elsewhere in (DEFAULT_TASKROUTE + "/m/f", "/internal/tasks/m/f"):
        assert served.deliver(request, path=elsewhere).status == 404
    assert len(conformance_recorder.events()) == 1
