"""URLs of every endpoint of the core: ``path("", include("im_task_django.urls"))``.

The patterns are those of the core's endpoint table
(:func:`im_task.endpoints.endpoints`): one :class:`EndpointPattern` per
endpoint, made in one loop, each routed to
:func:`~im_task_django.views.endpoint_view`, which calls the endpoint's
handler. :data:`urlpatterns` reads the table whenever Django resolves a
request, so an endpoint added to the table (even after this module is
imported) is served with no change here; and each pattern reads its path
when matching, so it follows the task route in force
(:func:`im_task.get_taskroute`, which ``IM_TASK["ROUTE"]`` sets) even when the
route is set after this module is imported, or changed by
``override_settings`` in a test.

The task endpoint's pattern is named ``task`` (``im_task:task`` through
``include``), and captures what follows the route as ``task_path``.

Example:
    >>> from django.urls import reverse
    >>> reverse("im_task:task", kwargs={"task_path": "app.tasks/send"})  # doctest: +SKIP
    '/_ah/task/app.tasks/send'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from typing import overload

from django.urls import URLPattern
from django.urls.resolvers import RegexPattern

from im_task.endpoints import Endpoint, endpoints
from im_task.routing import normalize_taskroute
from im_task_django.views import endpoint_view

__all__ = [
    "EndpointPattern",
    "EndpointPatterns",
    "app_name",
    "endpoint_urlpattern",
    "task_urlpatterns",
    "urlpatterns",
]

app_name = "im_task"


@functools.lru_cache(maxsize=64)
def _compile(path: str, prefix: bool, group: str) -> re.Pattern[str]:
    base = re.escape(path.strip("/"))
    if prefix:
        return re.compile(rf"^{base}/(?P<{group}>.+)\Z")
    return re.compile(rf"^{base}\Z")


def _group(endpoint: Endpoint) -> str:
    """The name of what a prefix endpoint captures after its path: ``task_path`` for the task endpoint."""
    return re.sub(r"\W", "_", f"{endpoint.name}_path")


class EndpointPattern(RegexPattern):
    """An endpoint's path (and, for a prefix endpoint, every path under it), the path read when matching.

    Args:
        endpoint: The endpoint.
        route: A fixed task route for an endpoint that follows the task
            route; the current :func:`im_task.get_taskroute` when None.
    """

    def __init__(self, endpoint: Endpoint, route: str | None = None) -> None:
        # RegexPattern.__init__ would store a fixed regex; keep its other attributes.
        self.endpoint = endpoint
        self._route = None if route is None else normalize_taskroute(route)
        self._regex_dict: dict[str, re.Pattern[str]] = {}
        self._is_endpoint = True
        self.name = None
        self.converters = {}

    @property
    def regex(self) -> re.Pattern[str]:  # type: ignore[override]
        """The compiled pattern for the endpoint's path now."""
        return _compile(self.endpoint.path(self._route), self.endpoint.prefix, _group(self.endpoint))

    @property
    def _regex(self) -> str:
        return self.regex.pattern


def endpoint_urlpattern(endpoint: Endpoint, route: str | None = None) -> URLPattern:
    """The URL pattern of one endpoint: its path to :func:`~im_task_django.views.endpoint_view`, named after it.

    Args:
        endpoint: The endpoint.
        route: A fixed task route (see :class:`EndpointPattern`).

    Returns:
        The pattern; the view receives the endpoint as its ``endpoint`` argument.
    """
    return URLPattern(EndpointPattern(endpoint, route), endpoint_view, {"endpoint": endpoint}, name=endpoint.name)


class EndpointPatterns(Sequence[URLPattern]):
    """The URL patterns of the endpoint table, as the table is when Django reads them.

    Django iterates a URLconf's ``urlpatterns`` for every request it
    resolves, so an endpoint added to :data:`im_task.endpoints.ENDPOINTS`
    after start-up is served at once. (``reverse()`` caches what it read
    first; call ``django.urls.clear_url_caches()`` to reverse a name added later.)

    Args:
        route: A fixed task route (see :class:`EndpointPattern`), or None to follow the one in force.
    """

    def __init__(self, route: str | None = None) -> None:
        self._route = route
        self._made: dict[Endpoint, URLPattern] = {}

    def _patterns(self) -> list[URLPattern]:
        patterns = []
        for endpoint in endpoints():
            pattern = self._made.get(endpoint)
            if pattern is None:
                pattern = self._made[endpoint] = endpoint_urlpattern(endpoint, self._route)
            patterns.append(pattern)
        return patterns

    @overload
    def __getitem__(self, index: int) -> URLPattern: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[URLPattern]: ...

    def __getitem__(self, index: int | slice) -> URLPattern | Sequence[URLPattern]:
        return self._patterns()[index]

    def __len__(self) -> int:
        return len(endpoints())

    def __iter__(self) -> Iterator[URLPattern]:
        return iter(self._patterns())

    def __repr__(self) -> str:
        return f"<EndpointPatterns {[endpoint.name for endpoint in endpoints()]}>"


def task_urlpatterns(route: str | None = None) -> list[URLPattern]:
    """The URL patterns of the endpoint table as it is now, to add to a URLconf without ``include()``.

    Args:
        route: A fixed task route; when None the patterns follow
            :func:`im_task.get_taskroute`.

    Returns:
        One pattern per endpoint; the task endpoint's is ``<route>/<anything>``, named ``task``.
    """
    return list(EndpointPatterns(route))


#: Every endpoint of the table, read when Django resolves a request.
urlpatterns = EndpointPatterns()
