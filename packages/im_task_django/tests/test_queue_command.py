"""``manage.py im_task_queue``: ``im-task queue`` with the project's settings, its secret and its tasks' modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from django_testproject import tasks
from im_task import configure
from im_task.config import get_settings
from im_task.transports import LocalTransport

TESTS = Path(__file__).resolve().parent


def test_queue_show_decodes_a_task_the_project_enqueued(capsys: pytest.CaptureFixture[str]) -> None:
    queue_file = get_settings().data_dir / "queue.sqlite3"  # where the command looks, as the project's settings say
    with LocalTransport(queue_file, autostart=False) as queue:
        configure(transport=queue)
        handle = tasks.record("shown by manage.py")
    call_command("im_task_queue", queue_args=["show", handle.name[:12]])  # a unique start of the name will do
    out = capsys.readouterr().out
    assert f"name:        {handle.name}" in out
    assert "function:    django_testproject.tasks.record" in out
    assert "'shown by manage.py'" in out


def test_queue_command_line_lists_the_projects_queue(tmp_path: Path) -> None:
    queue_file = Path(settings.IM_TASK["DATA_DIR"]) / "queue.sqlite3"
    queue_file.unlink(missing_ok=True)
    with LocalTransport(queue_file, autostart=False) as queue:
        configure(transport=queue)
        handle = tasks.record("listed")
    env = {**os.environ, "IM_TASK_DATA_DIR": str(tmp_path)}  # IM_TASK wins over the environment
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "django", "im_task_queue", "--settings", "django_testproject.settings"]
    listed = subprocess.run([*command, "list"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    assert handle.name in listed.stdout
    missing = subprocess.run(
        [*command, "show", "no-such-task"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert missing.returncode == 1
    assert "no task named 'no-such-task'" in missing.stderr


def test_queue_command_from_code_passes_failures_on(tmp_path: Path) -> None:
    queue_file = tmp_path / "queue.sqlite3"
    LocalTransport(queue_file, autostart=False).close()
    with pytest.raises(CommandError, match="status 1"):
        call_command("im_task_queue", queue_args=["show", "nothing-of-that-name", "--db", str(queue_file)])
