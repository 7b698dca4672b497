"""Every framework's demo, run as a user runs it (``python examples/run_demo.py <framework>``, or ``nox -s demo``).

The three demo apps start the same shared scenarios of ``examples/demo_kit``
(Django adds a transactional one), so each demo must print the same summary
rows, all ``ok``, and exit with status 0. Demos run as separate processes
without any ``IM_TASK_*`` variable from the environment; a framework's demo
is skipped, saying why, when that framework or its adapter is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The scenarios of issue #3 that every demo shows, in the order of the summary.
SHARED = ("closure", "fan-out", "function-argument", "countdown", "retries", "permanent-failure", "lambda")
#: Each framework's summary rows.
ROWS = {"flask": SHARED, "django": (*SHARED, "transactional"), "webapp2": SHARED}
#: What each framework's demo needs: (module, distribution to install).
REQUIREMENTS = {
    "flask": [("flask", "Flask"), ("im_task_flask", "im-task-flask")],
    "django": [("django", "Django"), ("im_task_django", "im-task-django")],
    "webapp2": [("webapp2", "webapp2"), ("im_task_webapp2", "im-task-webapp2")],
}


def skip_unless_installed(framework: str) -> None:
    for module, distribution in REQUIREMENTS[framework]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(
                f"the {framework} demo needs {distribution}, which is not installed: pip install {distribution}"
            )


def run_demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("IM_TASK_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, "examples/run_demo.py", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def summary_rows(stdout: str) -> dict[str, str]:
    """The summary table's rows by scenario: the lines between the rules under its header."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("scenario ") and line.endswith("result"))
    assert set(lines[start + 1]) == {"-"}, lines[start + 1]
    end = next(i for i in range(start + 2, len(lines)) if set(lines[i]) == {"-"})
    return {line.split()[0]: line for line in lines[start + 2 : end]}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("framework", sorted(ROWS))
def test_the_demo_shows_every_scenario_and_exits_0(framework: str) -> None:
    skip_unless_installed(framework)
    result = run_demo(framework)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = summary_rows(result.stdout)
    assert tuple(rows) == ROWS[framework], result.stdout
    for row in rows.values():
        assert row.endswith(" ok"), row
    assert "Every scenario ran as expected." in result.stdout
    for name in ROWS[framework]:
        assert f"POST /scenarios/{name} -> 202" in result.stdout  # started through the app's own route


@pytest.mark.timeout(240)
def test_the_demo_fails_and_says_what_is_missing_when_time_runs_out() -> None:
    skip_unless_installed("flask")
    result = run_demo("flask", "--timeout", "0.2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: not every outcome was seen within 0.2s" in result.stdout
    assert summary_rows(result.stdout)["countdown"].endswith(" MISSING")  # due only after 1 s


def test_the_demo_runner_refuses_unknown_frameworks() -> None:
    result = run_demo("bottle")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


@pytest.fixture
def scenarios(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``demo_kit.scenarios``, imported from ``examples/`` as the demos import it."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    return importlib.import_module("demo_kit.scenarios")


def test_the_shared_catalogue_is_the_scenarios_of_issue_3(scenarios: ModuleType) -> None:
    assert tuple(scenarios.SCENARIOS) == SHARED


def test_an_extra_scenario_comes_last_and_may_not_take_a_shared_name(scenarios: ModuleType) -> None:
    Scenario, Counts = scenarios.Scenario, scenarios.Counts
    extra = Scenario("extra", lambda: None, Counts(runs=1))
    assert tuple(scenarios.catalog([extra])) == (*SHARED, "extra")
    with pytest.raises(ValueError, match="Two scenarios are named 'lambda'"):
        scenarios.catalog([Scenario("lambda", lambda: None, Counts(runs=1))])


def test_starting_an_unknown_scenario_names_the_known_ones(scenarios: ModuleType) -> None:
    with pytest.raises(scenarios.UnknownScenarioError, match="try one of closure, fan-out"):
        scenarios.start("nope")
