"""The task route and the URL each task is POSTed to."""

from __future__ import annotations

from typing import Any

import pytest

from im_task import ConfigurationError, get_taskroute, set_taskroute, task
from im_task.routing import DEFAULT_TASKROUTE, normalize_taskroute, task_path

MODULE = __name__


def top_level() -> None:
    """A task body."""


class Service:
    def method(self) -> None:
        """A method."""

    @task
    def decorated(self) -> None:
        """A decorated method."""

    @classmethod
    def build(cls) -> None:
        """A class method."""

    class Inner:
        def deep(self) -> None:
            """A method of a nested class."""


class CallableThing:
    def __call__(self) -> None:
        """Makes instances callable."""


def test_default_route() -> None:
    assert get_taskroute() == DEFAULT_TASKROUTE == "/_ah/task"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/tasks", "/tasks"),
        ("/Tasks/", "/Tasks"),
        ("/MyApp/Background///", "/MyApp/Background"),
        ("/_ah/queue", "/_ah/queue"),
        ("/v1.2/run-tasks~x", "/v1.2/run-tasks~x"),
    ],
)
def test_set_taskroute_keeps_case_and_drops_trailing_slashes(given: str, kept: str) -> None:
    set_taskroute(given)
    assert get_taskroute() == kept
    assert task(top_level).url == f"{kept}/{MODULE}/top_level"


@pytest.mark.parametrize("bad", ["", "/", "//", "/a b", "/a?b=1", "/a#frag", "/a//b", "/tâche", "/a\n"])
def test_set_taskroute_rejects_bad_routes(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="must be an absolute path such as '/_ah/task'"):
        set_taskroute(bad)
    assert get_taskroute() == DEFAULT_TASKROUTE


@pytest.mark.parametrize("bad", [None, 3, b"/tasks", ["/tasks"]])
def test_set_taskroute_rejects_non_strings(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="must be a string"):
        set_taskroute(bad)


def test_urls_of_every_kind_of_callable() -> None:
    def outer() -> Any:
        def inner() -> None:
            """Nested twice."""

        return inner

    assert task(top_level).url == f"/_ah/task/{MODULE}/top_level"
    assert task(outer).url == f"/_ah/task/{MODULE}/test_urls_of_every_kind_of_callable/outer"
    assert task(outer()).url == f"/_ah/task/{MODULE}/test_urls_of_every_kind_of_callable/outer/inner"
    assert task(lambda: None).url == f"/_ah/task/{MODULE}/test_urls_of_every_kind_of_callable/lambda"
    assert task(Service().method).url == f"/_ah/task/{MODULE}/Service/method"
    assert task(Service.method).url == f"/_ah/task/{MODULE}/Service/method"
    assert Service().decorated.url == f"/_ah/task/{MODULE}/Service/decorated"
    assert task(Service.build).url == f"/_ah/task/{MODULE}/Service/build"
    assert task(Service.Inner().deep).url == f"/_ah/task/{MODULE}/Service/Inner/deep"
    assert task(CallableThing()).url == f"/_ah/task/{MODULE}/CallableThing"
    assert task(CallableThing).url == f"/_ah/task/{MODULE}/CallableThing"
    assert task(len).url == "/_ah/task/builtins/len"


def test_url_option_replaces_the_whole_url() -> None:
    set_taskroute("/elsewhere")
    assert task(top_level, url="/custom/endpoint").url == "/custom/endpoint"


def test_logname_option_replaces_module_and_function() -> None:
    assert task(top_level, logname="reports/daily").url == "/_ah/task/reports/daily"
    assert task(top_level, logname="/slashes/").url == "/_ah/task/slashes"
    assert task(top_level, logname="with space").url == "/_ah/task/with%20space"


def test_task_path_quotes_what_a_url_cannot_hold() -> None:
    def fn() -> None:
        """A body."""

    fn.__qualname__ = "wéird name"
    assert task_path(fn) == f"{MODULE}/w%C3%A9ird%20name"


def test_route_is_fixed_when_the_task_function_is_made() -> None:
    made_before = task(top_level)
    set_taskroute("/later")
    assert made_before.url == f"/_ah/task/{MODULE}/top_level"
    assert task(top_level).url == f"/later/{MODULE}/top_level"
    assert made_before.using(countdown=1).url.startswith("/")


def test_bound_copies_of_a_decorated_method_keep_the_route_of_the_decoration() -> None:
    set_taskroute("/later")
    assert Service().decorated.url == f"/_ah/task/{MODULE}/Service/decorated"


@pytest.mark.parametrize(("route", "expected"), [("/_ah/task", "/_ah/task"), ("tasks/", "/tasks"), ("/A/B/", "/A/B")])
def test_normalize_taskroute_gives_one_form(route: str, expected: str) -> None:
    assert normalize_taskroute(route) == expected


@pytest.mark.parametrize("route", ["", "/", "/a b", "/a?b", "/a#b", "/a/<b>", "//", 5, None, b"/x"])
def test_normalize_taskroute_refuses_what_is_not_a_plain_path(route: object) -> None:
    with pytest.raises(ConfigurationError, match="task route must be"):
        normalize_taskroute(route)
