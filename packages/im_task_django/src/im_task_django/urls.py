"""URLs of the task endpoint: ``path("", include("im_task_django.urls"))``.

The pattern follows the task route in force when a request arrives
(:func:`im_task.get_taskroute`, which ``IM_TASK["route"]`` sets), so it
agrees with the URLs of the tasks even when the route is set after this
module is imported, or changed by ``override_settings`` in a test.
"""

from __future__ import annotations

import functools
import re

from django.urls import URLPattern
from django.urls.resolvers import RegexPattern

from im_task.routing import get_taskroute
from im_task_django.views import task_view

__all__ = ["TaskRoutePattern", "app_name", "task_urlpatterns", "urlpatterns"]

app_name = "im_task"


@functools.lru_cache(maxsize=16)
def _compile(route: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(route.strip('/'))}/(?P<task_path>.*)\Z")


class TaskRoutePattern(RegexPattern):
    """``<task route>/<anything>``, the route read when matching.

    Args:
        route: A fixed route; the current :func:`im_task.get_taskroute` when None.
    """

    def __init__(self, route: str | None = None) -> None:
        # RegexPattern.__init__ would store a fixed regex; keep its other attributes.
        self._route = route
        self._regex_dict: dict[str, re.Pattern[str]] = {}
        self._is_endpoint = True
        self.name = None
        self.converters = {}

    @property
    def regex(self) -> re.Pattern[str]:  # type: ignore[override]
        """The compiled pattern for the route in force."""
        return _compile(self._route or get_taskroute())

    @property
    def _regex(self) -> str:
        return self.regex.pattern


def task_urlpatterns(route: str | None = None) -> list[URLPattern]:
    """The URL patterns of the task endpoint, to add to a URLconf.

    Args:
        route: A fixed task route; when None the patterns follow
            :func:`im_task.get_taskroute`.

    Returns:
        ``<route>/<anything>`` to :func:`~im_task_django.views.task_view`,
        named ``task`` (``im_task:task`` when included through this module).
    """
    return [
        URLPattern(TaskRoutePattern(route), task_view, name="task"),
        # The App Engine deferred endpoint (/_ah/queue/deferred) joins here once im_task.deferred exists.
    ]


urlpatterns = task_urlpatterns()
