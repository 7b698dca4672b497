"""The app's start-up: what AppConfig.ready() wires into im-task."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import transaction

from django_testproject import tasks
from im_task import BadTransactionStateError, config
from im_task.transactions import unregister_binder
from im_task.transports import RecordingTransport
from im_task_django.apps import ImTaskConfig
from im_task_django.transactions import binder
from im_task_django.wsgi import project_wsgi_application


def test_ready_registers_the_binder_and_the_local_target(recorder: RecordingTransport) -> None:
    unregister_binder(binder)
    config.register_local_target(None)
    with transaction.atomic(), pytest.raises(BadTransactionStateError, match="none is installed"):
        tasks.record_transactional("no binder")

    app_config = apps.get_app_config("im_task_django")
    assert isinstance(app_config, ImTaskConfig)
    app_config.ready()

    assert config.get_local_target() is project_wsgi_application
    with transaction.atomic():
        tasks.record_transactional("bound")
    assert len(recorder.requests) == 1


def test_project_wsgi_application_loads_lazily_and_can_be_forgotten() -> None:
    from django_testproject.wsgi import application

    project_wsgi_application.forget()
    assert project_wsgi_application.load() is application
    project_wsgi_application.forget()
    assert project_wsgi_application._app is None
