"""Dead letters on Cloud Tasks (gcloud-tasks-emulator): the endpoint keeps them, `im-task dead replay` resends.

Cloud Tasks forgets a task answered 200, so without a dead letter a task that
failed permanently would exist nowhere.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport import dead_tasks, sink

from im_task.cli import main
from im_task.deadletter import DeadLetter
from im_task.stores.deadletters import get_dead_letter_store

WAIT = 60.0


def wait_for_letters(count: int) -> list[DeadLetter]:
    store = get_dead_letter_store()
    assert store is not None
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        letters = list(store.list())
        if len(letters) >= count:
            return letters
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} dead letters after {WAIT}s")


def test_a_task_that_failed_on_cloud_tasks_is_kept_and_replayed_through_cloud_tasks(
    cloud_tasks: Any, wait_for: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "healed"
    dead_tasks.fails_until_healed(str(marker), ["order", 42])
    [kept] = wait_for_letters(1)
    cloud_tasks.wait_idle()  # answered 200: the queue forgot it
    assert (kept.queue, kept.outcome, kept.attempts) == ("default", "failed", 1)
    assert "does not exist yet" in kept.error
    assert main(["dead", "show", kept.name]) == 0
    assert "['order', 42]" in capsys.readouterr().out

    marker.touch()
    assert main(["dead", "replay", kept.name]) == 0
    replayed = capsys.readouterr().out
    assert f"Replayed {kept.name} of queue default as " in replayed
    assert wait_for(1) == [("healed", str(marker))]
    assert list(get_dead_letter_store().list()) == []  # type: ignore[union-attr]
    new_name = replayed.split(" as ")[-1].rstrip(".\n")
    assert new_name != kept.name
    sink.reset()
