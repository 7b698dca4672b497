"""settings.IM_TASK: read, pushed into the core, re-read under override_settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import override_settings
from django.urls import reverse

from django_testproject import tasks
from django_testproject.client import post_task, request
from im_task import config, get_taskroute, local_target, runtime
from im_task.transports import ImmediateTransport, RecordingTransport
from im_task_django.conf import (
    SETTING_NAMES,
    AppSettings,
    SettingsError,
    apply_settings,
    get_app_settings,
    get_settings_error,
    read_settings,
)
from im_task_django.wsgi import project_wsgi_application


def test_defaults() -> None:
    assert read_settings({}) == AppSettings()
    assert AppSettings().database == "default"
    assert AppSettings().sweep_older_than == 60.0
    assert AppSettings().register_local_target is True


def test_keys_are_upper_case_as_in_djangos_own_settings_dicts() -> None:
    assert SETTING_NAMES == (
        "TRANSPORT",
        "SECRET",
        "DATA_DIR",
        "MAX_BODY_SIZE",
        "WARMUP_MODULE",
        "DEFAULT_QUEUE",
        "ENVIRONMENT",
        "PROJECT",
        "LOCATION",
        "BASE_URL",
        "SERVICE_ACCOUNT_EMAIL",
        "AUDIENCE",
        "BACKGROUND_SERVICE",
        "FRONT_AUTHENTICATED",
        "ACCEPT_LEGACY_PAYLOADS",
        "PAYLOAD_STORE",
        "DEAD_LETTER_STORE",
        "LOG_OUTCOMES",
        "ENVELOPE_LIFETIME",
        "ACCEPT_UNBOUND_ENVELOPES",
        "ROUTE",
        "REGISTER_LOCAL_TARGET",
        "DATABASE",
        "SWEEP_OLDER_THAN",
        "CLAIM_SECONDS",
        "SWEEP_INTERVAL",
    )
    read = read_settings(
        {
            "DEFAULT_QUEUE": "mail",
            "ROUTE": "tasks/",
            "REGISTER_LOCAL_TARGET": False,
            "DATABASE": "other",
            "SWEEP_OLDER_THAN": 5,
            "WARMUP_MODULE": None,  # None: not set
        }
    )
    assert read == AppSettings(
        core={"default_queue": "mail"},
        route="/tasks",
        register_local_target=False,
        database="other",
        sweep_older_than=5.0,
    )


def test_project_settings_are_pushed_into_the_core() -> None:
    assert config.get_settings().environment == "development"
    assert local_target.get_local_target() is project_wsgi_application


def test_task_url_name() -> None:
    assert reverse("im_task:task", kwargs={"task_path": "m/f"}) == "/_ah/task/m/f"


def test_override_settings_changes_core_settings(tmp_path: Path) -> None:
    config.reset()  # drop the test's configure() so that IM_TASK decides
    changed = {"DEFAULT_QUEUE": "mail", "MAX_BODY_SIZE": 4096, "TRANSPORT": "recording", "DATA_DIR": str(tmp_path)}
    with override_settings(IM_TASK=changed):
        current = config.get_settings()
        assert (current.default_queue, current.max_body_size) == ("mail", 4096)
        assert isinstance(runtime.get_transport(), RecordingTransport)
        handle = tasks.record("queued")
        assert handle.queue == "mail"
    assert config.get_settings().default_queue == "default"
    assert config.get_settings().max_body_size == 1024 * 1024


def test_transport_instance_in_settings() -> None:
    config.reset()
    transport = ImmediateTransport()
    with override_settings(IM_TASK={"TRANSPORT": transport, "SECRET": "a-secret-for-this-test-0123456789abc"}):
        tasks.record("immediately")
    assert tasks.RESULTS == ["immediately"]


def test_configure_wins_over_settings() -> None:
    config.configure(default_queue="explicit")
    with override_settings(IM_TASK={"DEFAULT_QUEUE": "from-settings"}):
        assert config.get_settings().default_queue == "explicit"


def test_register_local_target_off() -> None:
    with override_settings(IM_TASK={"REGISTER_LOCAL_TARGET": False}):
        assert local_target.get_local_target() is None
    assert local_target.get_local_target() is project_wsgi_application


def test_route_setting_moves_the_endpoint(server: str, recorder: RecordingTransport) -> None:
    with override_settings(IM_TASK={"ROUTE": "/tasks/"}):
        assert get_taskroute() == "/tasks"
        assert request(server, "GET", "/tasks/m/f").status == 405
        assert request(server, "GET", "/_ah/task/m/f").status == 404
        from im_task import task

        moved = task(tasks.record.func)
        moved("moved")
        assert recorder.requests[0].url.startswith("/tasks/")
        assert post_task(server, recorder.requests[0]).status == 200
    assert get_taskroute() == "/_ah/task"
    assert request(server, "GET", "/_ah/task/m/f").status == 405
    assert tasks.RESULTS == ["moved"]


@pytest.mark.parametrize(
    ("value", "check_id", "words"),
    [
        (["secret"], "im_task.E001", "must be a dict"),
        ({"SECRETT": "x"}, "im_task.E002", "unknown key 'SECRETT' (did you mean 'SECRET'?)"),
        ({"secret": "x"}, "im_task.E002", "'secret' must be written 'SECRET'"),
        ({"SECRET": "a-long-enough-secret", "route": "/tasks"}, "im_task.E002", "'route' must be written 'ROUTE'"),
        ({3: "x"}, "im_task.E002", "unknown key '3'"),
        ({"ROUTE": ""}, "im_task.E003", "IM_TASK['ROUTE']"),
        ({"ROUTE": "/has space"}, "im_task.E003", "IM_TASK['ROUTE']"),
        ({"REGISTER_LOCAL_TARGET": "yes"}, "im_task.E003", "IM_TASK['REGISTER_LOCAL_TARGET'] must be True or False"),
        ({"DATABASE": 3}, "im_task.E003", "IM_TASK['DATABASE'] must be a database alias"),
        ({"SWEEP_OLDER_THAN": -1}, "im_task.E003", "IM_TASK['SWEEP_OLDER_THAN'] must be a number of seconds"),
        ({"MAX_BODY_SIZE": "big"}, "im_task.E003", "IM_TASK['MAX_BODY_SIZE']"),
        ({"ENVIRONMENT": "staging"}, "im_task.E003", "IM_TASK['ENVIRONMENT']"),
        ({"TRANSPORT": 3}, "im_task.E003", "IM_TASK['TRANSPORT']"),
    ],
)
def test_invalid_settings_are_recorded_not_applied(value: object, check_id: str, words: str) -> None:
    before = get_app_settings()
    with override_settings(IM_TASK=value):
        error = get_settings_error()
        assert isinstance(error, SettingsError)
        assert error.check_id == check_id
        assert words in str(error)
        assert get_app_settings() is before
        assert get_taskroute() == "/_ah/task"
    assert get_settings_error() is None


def test_apply_settings_returns_what_is_in_force() -> None:
    with override_settings(IM_TASK={"DATABASE": "other", "SWEEP_OLDER_THAN": 5}):
        applied = apply_settings()
        assert (applied.database, applied.sweep_older_than) == ("other", 5.0)
