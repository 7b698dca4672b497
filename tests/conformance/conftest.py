"""The conformance suite's fixtures: one registry of adapters, one served app per adapter.

Every test that takes ``served_app`` (or ``serve``) runs once per adapter in
:data:`ADAPTERS`, against the adapter's WSGI application served over real
HTTP on 127.0.0.1 by :func:`im_task.testing.serve_wsgi`.

To add an adapter, add one entry to :data:`ADAPTERS`: a context manager
factory that yields the adapter's WSGI application for a task route and a
dict of core settings (the names :func:`im_task.configure` takes), passing
the settings through the framework's own configuration as a user would.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

# This directory's modules are importable by name: the root conftest.py puts it on sys.path.
from conformance_support import CAP, Served
from im_task_testsupport import sink

import im_task.config
import im_task.local_target
from im_task import set_taskroute
from im_task.routing import DEFAULT_TASKROUTE
from im_task.testing import serve_wsgi
from im_task.testing.plugin import ImTaskSettings
from im_task.transports import RecordingTransport

#: The secret every test is configured with (explicitly, so it wins over any framework setting).
SECRET = "conformance-secret-0123456789abcdef"

WSGIApp = Callable[..., Any]


AppFactory = Callable[[str, Mapping[str, Any]], AbstractContextManager[WSGIApp]]


@dataclass(frozen=True)
class Adapter:
    """One framework adapter under test.

    Attributes:
        name: The test id.
        module: A module the adapter needs; its tests are skipped when it is not installed.
        build: A context manager factory: given a task route and core settings
            (:func:`im_task.configure` names), it yields the WSGI application
            serving tasks under that route with those settings, set the way a
            user of the framework sets them, and undoes what it changed on exit.
    """

    name: str
    module: str
    build: AppFactory


@contextmanager
def _core(route: str, settings: Mapping[str, Any]) -> Iterator[WSGIApp]:
    from im_task.wsgi import TaskWSGIApp

    im_task.config.set_framework_settings(settings, source="the conformance suite")
    app = TaskWSGIApp(route)
    im_task.local_target.register_local_target(app)
    yield app


@contextmanager
def _webapp2(route: str, settings: Mapping[str, Any]) -> Iterator[WSGIApp]:
    from im_task_webapp2 import routes, setup  # first: it imports webapp2 without webapp2's import-time warnings

    # isort: split
    import webapp2

    yield setup(webapp2.WSGIApplication(routes(route), config={"im_task": {**settings, "route": route}}))


@contextmanager
def _flask(route: str, settings: Mapping[str, Any]) -> Iterator[WSGIApp]:
    from flask import Flask

    from im_task_flask import CONFIG_KEYS, ImTask

    keys = {name: key for key, name in CONFIG_KEYS.items()}
    app = Flask("conformance")
    app.config.update({keys[name]: value for name, value in settings.items()})
    app.config["IM_TASK_ROUTE"] = route
    ImTask(app)
    yield app


@contextmanager
def _django(route: str, settings: Mapping[str, Any]) -> Iterator[WSGIApp]:
    import django_conformance

    with django_conformance.project(route, settings) as app:
        yield app


#: The adapters under test, by test id.
ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        Adapter("wsgi", "im_task.wsgi", _core),
        Adapter("webapp2", "im_task_webapp2", _webapp2),
        Adapter("flask", "im_task_flask", _flask),
        Adapter("django", "im_task_django", _django),
    )
}


@pytest.fixture(autouse=True)
def _isolated(im_task_settings: ImTaskSettings, im_task_recorder: RecordingTransport) -> Iterator[None]:
    """A clean core from the plugin: fixed secret, private data dir, a recording transport, the default route."""
    sink.reset()
    im_task_settings(secret=SECRET)
    yield
    sink.reset()


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> Adapter:
    """Each adapter in turn (skipped when its package is not installed)."""
    chosen = ADAPTERS[request.param]
    if importlib.util.find_spec(chosen.module) is None:
        pytest.skip(f"{chosen.module} is not installed")
    return chosen


@pytest.fixture
def serve(adapter: Adapter) -> Iterator[Callable[..., Served]]:
    """Starts the adapter's application for a task route; ``serve(route="/tasks")``.

    The route becomes the process's task route (``set_taskroute``) before
    the application is built, as at an application's start-up, so tasks
    decorated afterwards are sent there. Servers stop when the test ends.
    """
    with ExitStack() as stack:

        def start(route: str = DEFAULT_TASKROUTE) -> Served:
            set_taskroute(route)
            app = stack.enter_context(adapter.build(route, {"max_body_size": CAP}))
            base_url = stack.enter_context(serve_wsgi(app))
            return Served(adapter.name, base_url, route)

        yield start


@pytest.fixture
def served_app(serve: Callable[..., Served]) -> Served:
    """The adapter's application serving tasks at the default route, over HTTP."""
    return serve()
