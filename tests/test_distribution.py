"""What the published packages say about themselves agrees with the repository.

``nox -s dist`` builds, installs and runs the packages; these are the quick
checks that need no build, run with every ``nox -s tests``: one version, one
set of Project-URLs, one license, classifiers that name what ``nox -s matrix``
runs, package READMEs that work on PyPI (absolute links, the warning about
the Python 2 releases first), README examples that ``tests/dist`` can run,
and ``python -m im_task --version``.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import im_task

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "im_task_core": "im_task",
    "im_task_flask": "im_task_flask",
    "im_task_django": "im_task_django",
    "im_task_webapp2": "im_task_webapp2",
}
VERSION_SOURCE = "src/im_task/__init__.py"


def pyproject(package: str) -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs tomllib (Python 3.11 or later)")
    data: dict[str, Any] = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text(encoding="utf-8"))
    return data


def load(path: Path) -> ModuleType:
    name = f"im_task_dist_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def nox_constant(name: str) -> Any:
    """A literal constant of noxfile.py (nox itself need not be installed)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) else None)
        )
        if isinstance(target, ast.Name) and target.id == name and node.value is not None:
            return ast.literal_eval(node.value)
    raise AssertionError(f"noxfile.py defines no literal {name}")


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_version_is_defined_once_in_the_core(package: str) -> None:
    project = pyproject(package)
    assert "version" not in project["project"], f"packages/{package}/pyproject.toml sets a version of its own"
    assert project["project"]["dynamic"] == ["version"]
    source = (ROOT / "packages" / package / project["tool"]["hatch"]["version"]["path"]).resolve()
    assert source == ROOT / "packages" / "im_task_core" / VERSION_SOURCE


@pytest.mark.parametrize("package", ["im_task_flask", "im_task_django", "im_task_webapp2"])
def test_an_adapter_says_the_version_of_the_core_and_requires_im_task_2(package: str) -> None:
    module = importlib.import_module(PACKAGES[package])
    assert module.__version__ == im_task.__version__
    assert "im-task>=2,<3" in pyproject(package)["project"]["dependencies"]


def test_every_package_has_the_same_project_urls_and_license() -> None:
    urls = {package: pyproject(package)["project"]["urls"] for package in PACKAGES}
    first = urls["im_task_core"]
    assert sorted(first) == ["Changelog", "Documentation", "Issues", "Source"]
    assert all(url.startswith("https://") for url in first.values())
    assert all(value == first for value in urls.values()), urls
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text
    assert "Version 2.0, January 2004" in license_text
    for package in PACKAGES:
        project = pyproject(package)["project"]
        assert project["license"] == "Apache-2.0"
        assert project["license-files"] == ["LICENSE"]
        assert (ROOT / "packages" / package / "LICENSE").read_text(encoding="utf-8") == license_text, package


def test_the_classifiers_name_what_the_matrix_runs() -> None:
    matrix = nox_constant("MATRIX")
    pythons = sorted({python for python, _, _ in matrix})
    assert pythons == nox_constant("PYTHONS")
    for package in PACKAGES:
        classifiers = pyproject(package)["project"]["classifiers"]
        named = sorted(
            c.rpartition(" :: ")[2] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
        )
        assert named == pythons, package
        assert pyproject(package)["project"]["requires-python"] == f">={pythons[0]}"
    django = pyproject("im_task_django")["project"]["classifiers"]
    named = sorted(c.rpartition(" :: ")[2] for c in django if c.startswith("Framework :: Django :: "))
    assert named == sorted({version for _, version, _ in matrix})
    assert any(
        requirement == f"Django>={min(named)}" for requirement in pyproject("im_task_django")["project"]["dependencies"]
    )
    flask_floor = min(version for _, _, version in matrix)
    assert f"Flask>={flask_floor}" in pyproject("im_task_flask")["project"]["dependencies"]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_package_readme_works_on_pypi(package: str) -> None:
    """PyPI shows the README alone: links must be absolute, and the Python 2 releases are warned about at once."""
    readme = (ROOT / "packages" / package / "README.md").read_text(encoding="utf-8")
    relative = re.findall(r"\]\((?!https?://|#)([^)]+)\)", readme)
    assert relative == [], f"packages/{package}/README.md links to {relative}, which mean nothing on PyPI"
    assert "in the repository" not in readme
    opening = "\n".join(readme.splitlines()[:12])
    for words in ("Python 3.10", "0.1", ">=2"):
        assert words in opening, f"the first lines of packages/{package}/README.md do not say {words!r}"


def test_the_readme_examples_are_found_for_every_framework() -> None:
    """The examples ``nox -s dist`` runs: one per framework, split into files, webapp2 imported after its shim."""
    driver = load(ROOT / "tests" / "dist" / "readme_examples.py")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    examples = driver.readme_examples(readme)
    assert sorted(examples) == sorted(driver.FRAMEWORKS)
    assert sorted(examples["django"]) == ["mysite/settings.py", "mysite/urls.py", "signup/views.py"]
    for files in examples.values():
        for path, source in files.items():
            compile(source, path, "exec")  # each file is valid Python as written
    webapp2_app = next(iter(examples["webapp2"].values()))
    assert webapp2_app.index("import im_task_webapp2") < webapp2_app.index("import webapp2\n")
    with pytest.raises(driver.CheckFailed, match="no example for webapp2"):
        driver.readme_examples(readme[: readme.index("**webapp2**")])
    opening = readme[: readme.index("## Examples")]
    assert "Python 3.10" in opening
    assert "0.1.x" in opening


def test_python_m_im_task_prints_the_version_and_runs_the_command() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "im_task", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (version.returncode, version.stdout) == (0, f"im-task {im_task.__version__}\n")
    usage = subprocess.run(
        [sys.executable, "-m", "im_task", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert usage.returncode == 0
    assert usage.stdout.startswith("usage: im-task")
    bad = subprocess.run(
        [sys.executable, "-m", "im_task", "nonsense"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2


def test_the_main_module_refuses_a_string_for_argv() -> None:
    from im_task.__main__ import main

    with pytest.raises(TypeError, match="list of arguments"):
        main("--version")  # type: ignore[arg-type]
