"""Every script in ``docs/examples`` runs as written and exits with status 0.

Each example asserts what it shows, so a zero exit means the documentation's
claims hold; a pytest module (``core_testing.py``) runs pytest on itself in a
process of its own, with im-task's pytest plugin, and exits with its status.
The parts of the examples that the pages include must exist. Examples run
as separate processes, each in its own empty working directory (where the
local queue keeps its state) and without any
``IM_TASK_*`` variable from the environment. An example for a framework
(``flask_*``, ``django_*``, ``webapp2_*``) is skipped, saying why, when that
framework or its adapter is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "docs" / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
#: What the examples of each framework need: (module, distribution to install).
REQUIREMENTS = {
    "flask_": [("flask", "Flask"), ("im_task_flask", "im-task-flask")],
    "django_": [("django", "Django"), ("im_task_django", "im-task-django")],
    "webapp2_": [("webapp2", "webapp2"), ("im_task_webapp2", "im-task-webapp2")],
}
#: Seconds an example may take; the slowest take about one.
TIMEOUT = 100


def missing_requirement(example: Path) -> str | None:
    """Why ``example`` cannot run here, or None when everything it needs is installed."""
    for prefix, requirements in REQUIREMENTS.items():
        if example.name.startswith(prefix):
            for module, distribution in requirements:
                if importlib.util.find_spec(module) is None:
                    return f"{example.name} needs {distribution}, which is not installed (pip install {distribution})"
    return None


def clean_environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("IM_TASK_") and name != "GAE_ENV"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in docs/examples
    return env


def test_the_core_examples_are_found() -> None:
    assert [p.name for p in EXAMPLES if p.name.startswith("core_")], f"no core_*.py example in {EXAMPLES_DIR}"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_and_exits_0(example: Path, tmp_path: Path) -> None:
    reason = missing_requirement(example)
    if reason is not None:
        pytest.skip(reason)
    result = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"docs/examples/{example.name} exited with status {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


INCLUDE = re.compile(r"```\{literalinclude\} (?P<path>examples/\S+)\n(?P<options>(?::[^\n]*\n)*)")
OPTION = re.compile(r':(?P<name>start-after|end-before): "(?P<marker>[^"\n]*)"')


def test_the_pages_include_parts_of_the_examples_that_exist() -> None:
    docs = EXAMPLES_DIR.parent
    missing, checked = [], 0
    for page in sorted(docs.glob("*.md")):
        for include in INCLUDE.finditer(page.read_text(encoding="utf-8")):
            checked += 1
            example = docs / include["path"]
            source = example.read_text(encoding="utf-8") if example.exists() else ""
            if not source:
                missing.append(f"{page.name}: {include['path']} does not exist")
            for option in OPTION.finditer(include["options"]):
                if option["marker"] not in source:
                    missing.append(f"{page.name}: {include['path']} has no {option['name']} {option['marker']!r}")
    assert checked > 0, f"no literalinclude of an example found in {docs}/*.md"
    assert missing == []
