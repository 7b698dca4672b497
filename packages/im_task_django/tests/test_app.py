"""The app's start-up: what AppConfig.ready() wires into im-task."""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.apps import apps
from django.db import transaction

from django_testproject import tasks
from im_task import BadTransactionStateError, config, configure, local_target, runtime
from im_task.transactions import unregister_binder
from im_task.transports import LocalTransport, RecordingTransport
from im_task_django.apps import ImTaskConfig
from im_task_django.transactions import binder
from im_task_django.wsgi import project_wsgi_application


def _get(base_url: str, path: str) -> int:
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=20)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def test_ready_registers_the_binder_and_the_local_target(recorder: RecordingTransport) -> None:
    unregister_binder(binder)
    local_target.register_local_target(None)
    with transaction.atomic(), pytest.raises(BadTransactionStateError, match="none is installed"):
        tasks.record_transactional("no binder")

    app_config = apps.get_app_config("im_task_django")
    assert isinstance(app_config, ImTaskConfig)
    app_config.ready()

    assert local_target.get_local_target() is project_wsgi_application
    with transaction.atomic():
        tasks.record_transactional("bound")
    assert len(recorder.requests) == 1


def test_project_wsgi_application_loads_lazily_and_can_be_forgotten() -> None:
    from django_testproject.wsgi import application

    project_wsgi_application.forget()
    assert project_wsgi_application.load() is application
    project_wsgi_application.forget()
    assert project_wsgi_application._app is None


def test_first_request_resumes_tasks_left_in_the_local_queue(server: str, tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    with LocalTransport(path, autostart=False) as before_restart:
        configure(transport=before_restart)
        tasks.record("left over")
    assert tasks.RESULTS == []
    config.reset()
    # The default transport: a LocalTransport on that same file.
    configure(data_dir=tmp_path, secret="im-task-django-test-secret-0123456789")
    ImTaskConfig.ready(apps.get_app_config("im_task_django"))  # reconnects the one-shot receiver

    _get(server, "/not-a-task/")  # any request: the project is serving

    assert tasks.recorded.wait(20)
    assert tasks.RESULTS == ["left over"]
    transport = runtime.get_transport()
    assert isinstance(transport, LocalTransport)
    assert transport.join(timeout=20)
