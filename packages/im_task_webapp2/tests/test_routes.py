"""``routes()`` and ``addrouteforwebapp2()``: which requests reach the task handler."""

from __future__ import annotations

import pytest
import webapp2
from webob import Request

from im_task import ConfigurationError, set_taskroute
from im_task_webapp2 import ROUTE_NAME, TaskHandler, addrouteforwebapp2, routes


class Home(webapp2.RequestHandler):
    def get(self) -> None:
        self.response.write("home")


def test_routes_serve_the_current_task_route_with_the_task_handler() -> None:
    route = routes()[0]  # the task endpoint comes first; the table's others follow
    assert isinstance(route, webapp2.Route)
    assert route.template == "/_ah/task/<path:.+>"
    assert route.handler is TaskHandler
    assert route.handler_method == "post"
    assert route.name == ROUTE_NAME
    assert route.methods is None  # every method reaches the core, which answers 405 itself


def test_routes_follow_set_taskroute_and_take_an_explicit_route() -> None:
    set_taskroute("/Background/Tasks")
    assert routes()[0].template == "/Background/Tasks/<path:.+>"
    assert routes("/jobs/")[0].template == "/jobs/<path:.+>"
    assert routes("jobs")[0].template == "/jobs/<path:.+>"  # normalised as set_taskroute does
    assert "/_ah/queue/deferred" in [r.template for r in routes("/jobs")]  # other endpoints keep their path


@pytest.mark.parametrize("route", ["/", "", "/a/<b>", "/a b", "/a?b", 42, b"/tasks"])
def test_routes_refuse_what_is_not_an_absolute_path(route: object) -> None:
    with pytest.raises(ConfigurationError, match="task route must be"):
        routes(route)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/_ah/task/m/f", "/_ah/task/a/b/c/d/e", "/_ah/task/x"])
def test_the_route_matches_any_depth_under_the_task_route(path: str) -> None:
    app = webapp2.WSGIApplication([*routes(), ("/", Home)])
    route, _, _ = app.router.match(Request.blank(path))
    assert route.handler is TaskHandler


@pytest.mark.parametrize("path", ["/_ah/task", "/_ah/taskx/m/f", "/_AH/TASK/m/f", "/elsewhere"])
def test_the_route_matches_nothing_outside_the_task_route(path: str) -> None:
    app = webapp2.WSGIApplication([*routes(), ("/", Home)])
    with pytest.raises(webapp2.exc.HTTPNotFound):
        app.router.match(Request.blank(path))
    assert Request.blank("/").get_response(app).body == b"home"


def test_addrouteforwebapp2_appends_the_task_routes_in_place() -> None:
    home = webapp2.Route("/", Home)
    app_routes = [home]
    assert addrouteforwebapp2(app_routes) is None
    assert app_routes[0] is home
    assert [r.template for r in app_routes[1:]] == [r.template for r in routes()]


@pytest.mark.parametrize("not_a_list", [(), None, "routes"])
def test_addrouteforwebapp2_needs_a_list(not_a_list: object) -> None:
    with pytest.raises(ConfigurationError, match="appends to a list of routes"):
        addrouteforwebapp2(not_a_list)  # type: ignore[arg-type]
