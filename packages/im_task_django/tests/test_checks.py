"""System checks: each one firing, and not firing."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from im_task import config


def check_ids(*, include_deployment_checks: bool = False) -> set[str]:
    messages = run_checks(include_deployment_checks=include_deployment_checks)
    return {message.id for message in messages if message.id and message.id.startswith("im_task.")}


def test_the_test_project_passes() -> None:
    assert check_ids() == set()
    assert check_ids(include_deployment_checks=True) == set()  # a secret is configured


def test_e001_to_e003_invalid_settings() -> None:
    with override_settings(IM_TASK="secret"):
        assert check_ids() == {"im_task.E001"}
    with override_settings(IM_TASK={"not_a_key": 1}):
        assert check_ids() == {"im_task.E002"}
    with override_settings(IM_TASK={"max_body_size": 10}):
        assert check_ids() == {"im_task.E003"}
        [message] = [m for m in run_checks() if m.id == "im_task.E003"]
        assert "max_body_size" in message.msg
        assert message.hint


def test_e003_invalid_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IM_TASK_MAX_BODY_SIZE", "big")
    config.configure(max_body_size=None)  # settings are resolved again, from the environment
    messages = [m for m in run_checks() if m.id == "im_task.E003"]
    assert len(messages) == 1
    assert "IM_TASK_MAX_BODY_SIZE" in messages[0].msg
    monkeypatch.delenv("IM_TASK_MAX_BODY_SIZE")
    config.configure(max_body_size=None)
    assert check_ids() == set()


def test_e004_no_secret_in_production() -> None:
    config.reset()
    with override_settings(IM_TASK={"environment": "production"}):
        assert "im_task.E004" in check_ids()
    with override_settings(IM_TASK={"environment": "production", "secret": "a-production-secret-value"}):
        assert "im_task.E004" not in check_ids()


def test_w003_deploy_check_without_secret() -> None:
    config.reset()
    with override_settings(IM_TASK={}):
        assert "im_task.W003" in check_ids(include_deployment_checks=True)
        assert "im_task.W003" not in check_ids()


def test_e005_unknown_transport() -> None:
    for transport in ("rabbit", "no_such_module_anywhere:make", "im_task.transports:NoSuchFactory"):
        with override_settings(IM_TASK={"transport": transport}):
            assert "im_task.E005" in check_ids(), transport
    for transport in ("recording", "im_task.transports:RecordingTransport"):
        with override_settings(IM_TASK={"transport": transport}):
            assert "im_task.E005" not in check_ids(), transport


def test_e006_route_not_mounted() -> None:
    with override_settings(ROOT_URLCONF="django_testproject.urls_without_tasks"):
        assert "im_task.E006" in check_ids()
    with override_settings(ROOT_URLCONF="django_testproject.urls_prefixed"):
        assert "im_task.E006" in check_ids()  # the prefix moves the endpoint away from the task URLs
    with override_settings(ROOT_URLCONF="django_testproject.urls_direct"):
        assert "im_task.E006" not in check_ids()
    assert "im_task.E006" not in check_ids()


def test_e007_unknown_database() -> None:
    with override_settings(IM_TASK={"database": "replica"}):
        assert "im_task.E007" in check_ids()
    with override_settings(IM_TASK={"database": "other"}):
        assert "im_task.E007" not in check_ids()


def test_w001_localhost_not_allowed() -> None:
    config.reset()
    with override_settings(ALLOWED_HOSTS=["example.com"]):
        assert "im_task.W001" in check_ids()
        with override_settings(DEBUG=True):
            assert "im_task.W001" not in check_ids()
        with override_settings(IM_TASK={"transport": "recording"}):
            assert "im_task.W001" not in check_ids()
        with override_settings(IM_TASK={"register_local_target": False}):
            assert "im_task.W001" not in check_ids()


def test_w002_ssl_redirect() -> None:
    with override_settings(SECURE_SSL_REDIRECT=True):
        assert "im_task.W002" in check_ids()
        with override_settings(SECURE_REDIRECT_EXEMPT=[r"^_ah/task/"]):
            assert "im_task.W002" not in check_ids()
