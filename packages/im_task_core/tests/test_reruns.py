"""Re-runs: the signed mark of a task sent again on purpose, and what it changes (dead letters, lines, the CLI)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from im_task_testsupport import dead_tasks, sink

from im_task import configure
from im_task.cli import main
from im_task.config import get_keyring
from im_task.keys import Keyring
from im_task.outcomes import OUTCOME_LOGGER, needs_settling, note_outcome
from im_task.reruns import RERUN_HEADER, rerun_headers, rerun_time
from im_task.response import answer
from im_task.stores.deadletters import get_dead_letter_store
from im_task.testing import ServedQueue
from im_task.testing.plugin import ImTaskSettings

SECRET = "reruns-tests-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
OLD = b"an-older-secret-still-in-the-list-0123456789"


@pytest.fixture(autouse=True)
def settings(im_task_settings: ImTaskSettings, tmp_path: Path) -> None:
    im_task_settings(secret=SECRET, data_dir=tmp_path)


def test_a_mark_verifies_with_the_keyring_and_is_dated() -> None:
    before = time.time()
    mark = rerun_headers()
    assert set(mark) == {RERUN_HEADER}
    moment = rerun_time(mark)
    assert moment is not None
    assert before <= moment <= time.time()
    assert rerun_time({RERUN_HEADER.lower(): mark[RERUN_HEADER]}) == moment  # any spelling of the name
    assert rerun_time(rerun_headers(now=1234.5)) == 1234.5


def test_a_mark_made_with_a_rotated_out_secret_still_verifies_and_an_unknown_one_does_not() -> None:
    old = Keyring([OLD])
    mark = rerun_headers(now=99.0, keyring=old)
    assert rerun_time(mark, keyring=Keyring([SECRET.encode(), OLD])) == 99.0
    assert rerun_time(mark) is None  # the keyring in force does not hold OLD


@pytest.mark.parametrize(
    "value",
    ["", "garbage", "1.2.3", "1.5.zz.00", "nan.0.00.00", "1.5.0011223344556677.00", "2.000000.aa.bb"],
)
def test_a_garbled_or_forged_mark_counts_as_none(value: str) -> None:
    assert rerun_time({RERUN_HEADER: value}) is None


def test_a_changed_time_does_not_verify() -> None:
    value = rerun_headers(now=100.0)[RERUN_HEADER]
    assert rerun_time({RERUN_HEADER: value.replace("100.", "999.", 1)}) is None
    assert rerun_time(None) is None
    assert rerun_time({}) is None


@pytest.mark.parametrize("now", [-1.0, float("nan"), float("inf"), True, "1"])
def test_a_mark_refuses_a_bad_time(now: object) -> None:
    with pytest.raises(ValueError, match="now must be seconds since the epoch"):
        rerun_headers(now=now)  # type: ignore[arg-type]


def test_note_outcome_does_nothing_outside_a_task_and_refuses_a_non_string() -> None:
    note_outcome("nothing runs")  # no task: nothing to note, nothing raised
    with pytest.raises(TypeError, match="note must be a str"):
        note_outcome(3)  # type: ignore[arg-type]


def test_a_task_that_ran_costs_no_settling_unless_it_was_asked_for_again() -> None:
    configure(log_outcomes=False)
    ran = answer(200, "OK")
    assert not needs_settling(ran, {"X-Other": "1"})
    assert needs_settling(ran, rerun_headers())


def test_queue_retry_runs_the_task_again_and_its_dead_letter_goes_once_it_ran(
    im_task_local_queue: ServedQueue,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger=OUTCOME_LOGGER)
    store = get_dead_letter_store()
    assert store is not None
    marker = tmp_path / "healed"
    name = dead_tasks.fails_until_healed(str(marker)).name
    im_task_local_queue.join()
    assert [letter.name for letter in store.list()] == [name]
    marker.touch()
    assert main(["queue", "retry", str(name), "--db", str(im_task_local_queue.transport.path)]) == 0
    assert "Queued 1 task(s) again." in capsys.readouterr().out
    im_task_local_queue.join()
    assert sink.calls == [("healed", str(marker))]
    assert list(store.list()) == []  # `im-task dead replay` cannot run it a second time
    [line] = [r.getMessage() for r in caplog.records if r.name == OUTCOME_LOGGER and "ran on attempt" in r.getMessage()]
    assert line.endswith("; its dead letter was forgotten.")
    assert get_keyring()  # the mark was signed with the secret in force


def test_a_run_without_the_mark_leaves_a_dead_letter_of_the_same_name_alone(
    im_task_local_queue: ServedQueue, tmp_path: Path
) -> None:
    store = get_dead_letter_store()
    assert store is not None
    marker = tmp_path / "healed"
    name = dead_tasks.fails_until_healed(str(marker)).name
    im_task_local_queue.join()
    marker.touch()
    im_task_local_queue.transport.retry(str(name))  # no mark: a duplicate, as far as anyone can tell
    im_task_local_queue.join()
    assert sink.calls == [("healed", str(marker))]
    assert [letter.name for letter in store.list()] == [name]


def test_dead_list_names_the_store_it_searched(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)  # the Django tests of this run may have set it
    monkeypatch.chdir(tmp_path)  # no manage.py here
    assert main(["dead", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("No dead letters in LocalDeadLetterStore(")
    assert str(tmp_path / "deadletters.sqlite3") in out
    assert "manage.py" not in out


def test_in_a_django_project_dead_points_to_the_manage_py_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
    assert main(["dead", "list"]) == 0
    out = capsys.readouterr().out
    assert "This looks like a Django project" in out
    assert "`python manage.py im_task_dead list`" in out
    assert main(["dead", "show", "gone"]) == 1
    err = capsys.readouterr().err
    assert "no dead letter of task 'gone'" in err
    assert "(searched LocalDeadLetterStore(" in err
    assert "`python manage.py im_task_dead show`" in err
