"""The URLconf mounts the core's endpoint table: whatever the table lists is served, with no change to the adapter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.urls import clear_url_caches, resolve, reverse
from django.urls.exceptions import Resolver404
from im_task_testsupport.endpoints import echo

import im_task.endpoints
from django_testproject import tasks
from django_testproject.client import post_task, request
from im_task.endpoints import ENDPOINTS, TASK_ENDPOINT, Endpoint
from im_task.transports import RecordingTransport
from im_task_django import urls
from im_task_django.views import endpoint_view


@pytest.fixture
def added_endpoints(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Endpoint]]:
    """Two endpoints added to the core's table after the URLconf was imported: an exact path and a prefix."""
    added = [
        Endpoint("exact", echo, lambda: "/_ah/im-task/exact", prefix=False),
        Endpoint("under", echo, lambda: "/_ah/im-task/under", prefix=True),
    ]
    monkeypatch.setattr(im_task.endpoints, "ENDPOINTS", [TASK_ENDPOINT, *added])  # only what the tests look at
    clear_url_caches()  # reverse() caches the names it read first
    yield added
    monkeypatch.undo()
    clear_url_caches()


def test_the_urlconf_lists_the_table() -> None:
    assert [pattern.name for pattern in urls.urlpatterns] == [
        endpoint.name for endpoint in im_task.endpoints.endpoints()
    ]
    assert len(urls.urlpatterns) == len(ENDPOINTS)
    [task_pattern] = [pattern for pattern in urls.urlpatterns if pattern.name == "task"]
    assert task_pattern.callback is endpoint_view
    assert task_pattern.default_args == {"endpoint": TASK_ENDPOINT}
    assert urls.urlpatterns[0] is task_pattern  # made once per endpoint


def test_an_endpoint_added_to_the_table_is_served(server: str, added_endpoints: list[Endpoint]) -> None:
    answered = request(server, "POST", "/_ah/im-task/exact", b"hello")
    assert (answered.status, answered.body) == (200, b"echo POST /_ah/im-task/exact hello\n")
    assert answered.headers["x-endpoint"] == "echo"
    assert request(server, "POST", "/_ah/im-task/exact/more").status == 404  # an exact path only
    assert request(server, "PUT", "/_ah/im-task/under/a/b", b"x").body == b"echo PUT /_ah/im-task/under/a/b x\n"
    assert request(server, "GET", "/_ah/im-task/under").status == 404  # a prefix endpoint: paths under it only
    assert request(server, "GET", "/_ah/im-task/underneath").status == 404
    assert reverse("im_task:exact") == "/_ah/im-task/exact"
    assert reverse("im_task:under", kwargs={"under_path": "a/b"}) == "/_ah/im-task/under/a/b"
    assert request(server, "GET", "/_ah/task/m/f").status == 405  # the task endpoint is still first


def test_an_endpoint_removed_from_the_table_is_not_served(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(im_task.endpoints, "ENDPOINTS", [])
    assert request(server, "GET", "/_ah/task/m/f").status == 404
    with pytest.raises(Resolver404):
        resolve("/_ah/task/m/f")


def test_task_urlpatterns_are_the_table_now(added_endpoints: list[Endpoint]) -> None:
    patterns = urls.task_urlpatterns("/fixed")
    assert [pattern.name for pattern in patterns] == ["task", "exact", "under"]
    assert patterns[0].resolve("fixed/m/f") is not None
    assert patterns[0].resolve("_ah/task/m/f") is None  # a fixed route does not follow get_taskroute()
    assert patterns[1].resolve("_ah/im-task/exact") is not None  # other endpoints keep their own path


def test_the_task_endpoint_serves_the_paths_under_the_task_route(server: str, recorder: RecordingTransport) -> None:
    tasks.record("ran")
    [sent] = recorder.requests
    assert post_task(server, sent).status == 200
    assert tasks.RESULTS == ["ran"]
    assert request(server, "GET", "/_ah/task").status == 404  # only paths under the route, as in the core
    assert resolve("/_ah/task/a/b").kwargs == {"endpoint": TASK_ENDPOINT, "task_path": "a/b"}
