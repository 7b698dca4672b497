"""Start-up: IM_TASK refused when invalid or unsafe, and the route set before any app's tasks are defined.

A real start-up needs a fresh process (Django is set up once per process), so
the tests that start a project run it in a child process, in an empty working
directory, as a WSGI server would (``get_wsgi_application()``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from im_task import config
from im_task_django.apps import ImTaskConfig
from im_task_django.conf import get_settings_error

PRODUCTION_SECRET = "a-production-secret-of-enough-bytes"
#: Who may call the endpoint, which production outside App Engine also needs (im_task.caller).
PRODUCTION_CALLERS = {
    "SERVICE_ACCOUNT_EMAIL": "tasks@my-project.iam.gserviceaccount.com",
    "AUDIENCE": "https://www.example.com",
}


def run_child(directory: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Runs a Python script in a child process, in the empty working directory ``directory / "child"``."""
    cwd = directory / "child"
    cwd.mkdir(exist_ok=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("IM_TASK_", "DJANGO_"))}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def project_settings(directory: Path, im_task: object, installed_apps: list[str]) -> str:
    """The start of a child's script: ``directory`` importable, Django configured with this ``IM_TASK``."""
    return textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(directory)!r})
        from django.conf import settings
        settings.configure(
            INSTALLED_APPS={installed_apps!r},
            ROOT_URLCONF="im_task_django.urls",
            ALLOWED_HOSTS=["testserver"],
            DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}}},
            IM_TASK={im_task!r},
        )
        """
    )


def start_project(directory: Path, im_task: dict[str, object]) -> str:
    """Starts a project with ``IM_TASK = im_task`` as a WSGI server would, in a child process; returns its output."""
    script = project_settings(directory, im_task, ["im_task_django"]) + textwrap.dedent(
        """
        from django.core.exceptions import ImproperlyConfigured
        from django.core.wsgi import get_wsgi_application
        try:
            get_wsgi_application()
        except ImproperlyConfigured as exc:
            print("ImproperlyConfigured:", exc)
            sys.exit(3)
        print("started")
        """
    )
    done = run_child(directory, script)
    assert done.returncode in (0, 3), done.stderr
    return done.stdout


def test_a_misspelled_key_refuses_to_start(tmp_path: Path) -> None:
    output = start_project(
        tmp_path,
        {"ENVIRONMENT": "production", "SECRET": PRODUCTION_SECRET, "TRANSPORT": "recording", "MAX_BODY_SISE": 1},
    )
    assert output.startswith("ImproperlyConfigured:")
    assert "'MAX_BODY_SISE' (did you mean 'MAX_BODY_SIZE'?)" in output
    assert "Fix settings.IM_TASK" in output
    assert list((tmp_path / "child").iterdir()) == []  # no local secret, no local queue


def test_lower_case_keys_refuse_to_start(tmp_path: Path) -> None:
    output = start_project(tmp_path, {"environment": "production", "secret": PRODUCTION_SECRET})
    assert output.startswith("ImproperlyConfigured:")
    assert "settings.IM_TASK: 'environment' must be written 'ENVIRONMENT'." in output
    assert list((tmp_path / "child").iterdir()) == []


def test_production_without_a_secret_refuses_to_start(tmp_path: Path) -> None:
    output = start_project(tmp_path, {"ENVIRONMENT": "production"})
    assert output.startswith("ImproperlyConfigured:")
    assert "No secret is configured" in output
    assert "IM_TASK['SECRET']" in output
    assert list((tmp_path / "child").iterdir()) == []


def test_production_with_a_secret_starts_without_making_the_transport(tmp_path: Path) -> None:
    output = start_project(tmp_path, {"ENVIRONMENT": "production", "SECRET": PRODUCTION_SECRET, **PRODUCTION_CALLERS})
    assert output.strip() == "started"
    assert list((tmp_path / "child").iterdir()) == []  # the default local queue is made on the first request


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"MAX_BODY_SISE": 1}, "unknown key"),
        ({"max_body_size": 4096}, r"'max_body_size' must be written 'MAX_BODY_SIZE'"),
        ({"MAX_BODY_SIZE": 10}, r"IM_TASK\['MAX_BODY_SIZE'\]"),
        ({"ROUTE": "/has space"}, r"IM_TASK\['ROUTE'\]"),
        ({"SWEEP_OLDER_THAN": -1}, r"IM_TASK\['SWEEP_OLDER_THAN'\]"),
        ("secret", "must be a dict"),
    ],
)
def test_ready_refuses_invalid_settings(value: object, words: str) -> None:
    app_config = apps.get_app_config("im_task_django")
    with override_settings(IM_TASK=value):
        assert get_settings_error() is not None  # a change after start-up is only recorded
        with pytest.raises(ImproperlyConfigured, match=words):
            ImTaskConfig.ready(app_config)
    assert get_settings_error() is None


def test_ready_refuses_production_without_a_secret(tmp_path: Path) -> None:
    config.reset()  # no configure(secret=...): IM_TASK decides
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    app_config = apps.get_app_config("im_task_django")
    with (
        override_settings(IM_TASK={"ENVIRONMENT": "production", "DATA_DIR": str(data_dir)}),
        pytest.raises(ImproperlyConfigured, match=r"IM_TASK\['SECRET'\]"),
    ):
        ImTaskConfig.ready(app_config)
    with override_settings(IM_TASK={"ENVIRONMENT": "production", "SECRET": PRODUCTION_SECRET, **PRODUCTION_CALLERS}):
        ImTaskConfig.ready(app_config)
    assert list(data_dir.iterdir()) == []  # no local secret made


def test_ready_refuses_an_invalid_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IM_TASK_MAX_BODY_SIZE", "big")
    config.configure(max_body_size=None)  # resolved again, from the environment
    with pytest.raises(ImproperlyConfigured, match="IM_TASK_MAX_BODY_SIZE"):
        ImTaskConfig.ready(apps.get_app_config("im_task_django"))


def _write_app_with_early_tasks(directory: Path) -> None:
    """An app whose tasks are defined in models.py and imported by its ready(), both before im_task_django's."""
    package = directory / "early_app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "apps.py").write_text(
        textwrap.dedent(
            """
            from django.apps import AppConfig

            class EarlyAppConfig(AppConfig):
                name = "early_app"

                def ready(self):
                    from early_app import jobs  # noqa: F401 - tasks imported when this app is ready
            """
        )
    )
    (package / "models.py").write_text("from im_task import task\n\n@task\ndef in_models():\n    pass\n")
    (package / "jobs.py").write_text("from im_task import task\n\n@task\ndef in_ready():\n    pass\n")


def test_route_applies_to_tasks_defined_in_models_and_earlier_ready(tmp_path: Path) -> None:
    _write_app_with_early_tasks(tmp_path)
    im_task = {"ROUTE": "/tasks", "TRANSPORT": "recording", "SECRET": PRODUCTION_SECRET}
    script = project_settings(tmp_path, im_task, ["early_app", "im_task_django"]) + textwrap.dedent(
        """
        import django
        django.setup()
        from django.core.checks import run_checks
        from django.test import Client
        from im_task.runtime import get_transport
        from im_task.headers import make_task_headers
        from early_app import jobs, models

        print(models.in_models.url)
        print(jobs.in_ready.url)
        models.in_models()
        jobs.in_ready()
        for request in get_transport().requests:  # POSTed through the URLconf, as a queue would
            headers = {**request.headers, **make_task_headers(queue_name="default", task_name="t")}
            answer = Client().post(request.url, request.body, content_type=headers.pop("Content-Type"), headers=headers)
            print(answer.status_code)
        print([message.id for message in run_checks() if message.id.startswith("im_task.")])
        """
    )
    done = run_child(tmp_path, script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "/tasks/early_app.models/in_models",
        "/tasks/early_app.jobs/in_ready",
        "200",
        "200",
        "[]",
    ]
