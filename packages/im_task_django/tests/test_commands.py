"""The management commands: im_task_sweep and im_task_worker."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import transaction

from django_testproject import tasks
from im_task import configure
from im_task.transports import LocalTransport
from im_task_django.management.commands.im_task_worker import Command as WorkerCommand
from im_task_django.models import OutboxTask

TESTS = Path(__file__).resolve().parent


def _closed_queue(tmp_path: Path) -> LocalTransport:
    closed = LocalTransport(tmp_path / "closed.sqlite3", autostart=False)
    closed.close()
    return closed


def test_sweep_command_sends_what_is_left(tmp_path: Path) -> None:
    configure(transport=_closed_queue(tmp_path))
    with transaction.atomic():
        tasks.record_transactional("left behind")
    with LocalTransport(tmp_path / "queue.sqlite3") as queue:
        configure(transport=queue)
        out = io.StringIO()
        call_command("im_task_sweep", "--older-than", "3600", stdout=out)
        assert "0 sent" in out.getvalue()
        call_command("im_task_sweep", "--older-than=0", stdout=out)
        assert "1 sent, 0 already sent, 0 failed, 0 taken by another sender, 0 sent rows deleted" in out.getvalue()
        queue.join(timeout=30)
        assert not OutboxTask.objects.filter(sent_at__isnull=True).exists()
        call_command("im_task_sweep", "--older-than=0", "--lease=5", stdout=out)
        assert "0 sent, 0 already sent, 0 failed, 0 taken by another sender, 1 sent rows deleted" in out.getvalue()
    assert tasks.RESULTS == ["left behind"]
    assert not OutboxTask.objects.exists()


def test_sweep_command_fails_when_tasks_cannot_be_sent(tmp_path: Path) -> None:
    configure(transport=_closed_queue(tmp_path))
    with transaction.atomic():
        tasks.record_transactional("stuck")
    with pytest.raises(CommandError, match="could not be sent"):
        call_command("im_task_sweep", "--older-than", "0", stdout=io.StringIO())
    assert OutboxTask.objects.count() == 1
    with pytest.raises(CommandError, match="DATABASES"):
        call_command("im_task_sweep", "--database", "replica", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("im_task_sweep", "--older-than", "-5")


def test_worker_command_delivers_over_http(server: str, tmp_path: Path) -> None:
    queue_file = tmp_path / "queue.sqlite3"
    with LocalTransport(queue_file, autostart=False) as queue:  # the project writes, the worker delivers
        configure(transport=queue)
        tasks.record("delivered by the worker")
    call_command(
        "im_task_worker", worker_args=["--target", server, "--db", str(queue_file), "--until-empty", "--quiet"]
    )
    assert tasks.RESULTS == ["delivered by the worker"]


def test_worker_command_line_uses_the_project_settings(server: str, tmp_path: Path) -> None:
    """``manage.py im_task_worker`` finds the queue in IM_TASK's data_dir, and passes bad usage through."""
    queue_file = Path(settings.IM_TASK["DATA_DIR"]) / "queue.sqlite3"
    queue_file.unlink(missing_ok=True)
    with LocalTransport(queue_file, autostart=False) as queue:
        configure(transport=queue)
        tasks.record("from the command line")
    env = {**os.environ, "IM_TASK_DATA_DIR": str(tmp_path)}  # IM_TASK wins over the environment
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "django", "im_task_worker", "--settings", "django_testproject.settings"]
    done = subprocess.run(
        [*command, "--target", server, "--until-empty"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "1 done" in done.stdout
    assert tasks.RESULTS == ["from the command line"]
    usage = subprocess.run(
        [*command, "--target", "nonsense"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert usage.returncode == 2
    assert "--target must be the app's base URL" in usage.stderr


def test_worker_command_strips_only_djangos_options() -> None:
    from im_task_django.management.passthrough import without_django_options

    assert without_django_options(["--settings", "s", "--target", "http://x", "--pythonpath=p", "--until-empty"]) == [
        "--target",
        "http://x",
        "--until-empty",
    ]
    assert WorkerCommand.help


def test_worker_command_help_names_the_management_command() -> None:
    """``manage.py im_task_worker --help`` gives the usage of the management command, not of ``im-task worker``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "django", "im_task_worker", "--settings", "django_testproject.settings", "--help"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m django im_task_worker [-h] --target URL"), done.stdout[:300]
    assert "im-task worker" not in done.stdout
