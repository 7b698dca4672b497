"""Every developer command of the im-task monorepo: ``nox -l`` lists them."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

ROOT = Path(__file__).parent
# The core first: the adapters depend on it.
ADAPTERS = sorted(p.parent.name for p in ROOT.glob("packages/*/pyproject.toml") if p.parent.name != "im_task_core")
# The core with its Google Cloud extra, so that the Cloud Tasks transport and the OIDC check are tested too.
PACKAGES = ["packages/im_task_core[gcp]", *(f"packages/{name}" for name in ADAPTERS)]
TEST_DEPS = ["pytest>=8", "pytest-timeout>=2.3", "Flask-WTF>=1.2", "import-linter>=2.1", "cryptography>=42"]
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def install_packages(session: nox.Session, *extra: str) -> None:
    args: list[str] = []
    for package in PACKAGES:
        args += ["-e", package]
    session.install(*args, *extra)


@nox.session
def tests(session: nox.Session) -> None:
    """Runs every package's tests, the conformance suite and the docs examples."""
    install_packages(session, *TEST_DEPS)
    session.run("pytest", *session.posargs)


def expose_pyenv_interpreters() -> None:
    """Puts pyenv's installed interpreters on PATH as ``pythonX.Y`` so that nox finds them.

    pyenv's shims refuse to run versions that are installed but not selected,
    and nox then reports them as not found.
    """
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    links = ROOT / ".nox" / "pythons"
    for version in PYTHONS:
        found = sorted(versions.glob(f"{version}.*/bin/python{version}"))
        link = links / f"python{version}"
        if found and not link.exists():
            links.mkdir(parents=True, exist_ok=True)
            link.symlink_to(found[-1])
    if links.is_dir():
        os.environ["PATH"] = f"{links}{os.pathsep}{os.environ.get('PATH', '')}"


expose_pyenv_interpreters()


@nox.session(python=PYTHONS)
def matrix(session: nox.Session) -> None:
    """Runs the tests on every supported Python."""
    install_packages(session, *TEST_DEPS)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Checks style and formatting with ruff, and the core's layers with import-linter (``.importlinter``)."""
    install_packages(session, "ruff>=0.6", "import-linter>=2.1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-checks the packages with mypy (strict on the core)."""
    install_packages(session, "mypy>=1.11", "django-stubs>=5", *TEST_DEPS)
    sources = [f"{package.partition('[')[0]}/src" for package in PACKAGES]
    session.run("mypy", *sources)


@nox.session
def docs(session: nox.Session) -> None:
    """Builds the documentation with warnings as errors."""
    install_packages(session, "-r", "docs/requirements.txt")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Runs an example app on the embedded local queue: ``nox -s demo -- [flask|django|webapp2]``."""
    install_packages(session)
    framework = session.posargs[0] if session.posargs else "flask"
    session.run("python", "examples/run_demo.py", framework)


@nox.session
def bench(session: nox.Session) -> None:
    """Prints benchmark ratios against baselines measured in the same process."""
    install_packages(session)
    session.run("python", "benchmarks/run.py", *session.posargs)
