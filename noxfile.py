"""Every developer command of the im-task monorepo: ``nox -l`` lists them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

ROOT = Path(__file__).parent
# The core first: the adapters depend on it.
ADAPTERS = sorted(p.parent.name for p in ROOT.glob("packages/*/pyproject.toml") if p.parent.name != "im_task_core")
# The core with its Google Cloud extra, so that the Cloud Tasks transport and the OIDC check are tested too.
PACKAGES = ["packages/im_task_core[gcp]", *(f"packages/{name}" for name in ADAPTERS)]
TEST_DEPS = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "Flask-WTF>=1.2",
    "import-linter>=2.1",
    "cryptography>=42",  # RSA keys for the OIDC tests
    "psycopg[binary]>=3.1",  # the outbox fault tests on PostgreSQL, where it is installed
    "hypothesis>=6.100",  # the endpoint's fuzz properties (test_fuzz_endpoint.py) and nox -s fuzz
    "gunicorn>=22; sys_platform != 'win32'",  # a Flask app served as the deployment docs say (test_gunicorn.py)
    # Django's task framework for ImTaskBackend: django.tasks from Django 6 (Python 3.12+), the backport before.
    "django-tasks>=0.12; python_version < '3.12'",
]
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


#: What ``nox -s matrix`` runs: each supported Python with a Django and a Flask release. The packages'
#: classifiers name exactly these (tests/test_distribution.py checks that they agree).
MATRIX = [
    ("3.10", "4.2", "2.3"),
    ("3.11", "5.2", "3.0"),
    ("3.12", "6.0", "3.1"),
    ("3.13", "6.1", "3.1"),
]


@nox.session
@nox.parametrize(("python", "django", "flask"), MATRIX, ids=[f"{py}-django{dj}-flask{fl}" for py, dj, fl in MATRIX])
def matrix(session: nox.Session, django: str, flask: str) -> None:
    """Runs the tests on every supported Python, each with a supported Django and Flask release."""
    install_packages(session, *TEST_DEPS, f"Django~={django}.0", f"Flask~={flask}.0")
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
    session.install("huey>=2.5")  # rows 3d-3e compare the local queue with it; not a dependency of im-task
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def dist(session: nox.Session) -> None:
    """Builds every package, checks the files, and runs the README's examples from the wheels in a fresh venv.

    Each package's sdist is built, then its wheel from that sdist (so an sdist
    that misses a file fails here); ``twine check --strict`` and
    ``tests/dist/check_dists.py`` check them. The wheels alone (the core with
    its ``gcp`` extra) are then installed from PyPI's dependencies into a new
    virtual environment outside the repository, where
    ``tests/dist/readme_examples.py`` runs the README's Flask, Django and
    webapp2 examples against real servers on 127.0.0.1, ``im-task --help`` and
    ``python -m im_task --version``. Arguments after ``--`` choose frameworks.
    """
    session.install("build>=1.2", "twine>=5", "trove-classifiers")
    with tempfile.TemporaryDirectory(prefix="im-task-dist-") as tmp:
        outside = Path(tmp)
        built = outside / "dist"
        for package in ["im_task_core", *ADAPTERS]:
            session.run("python", "-m", "build", "--outdir", str(built), str(ROOT / "packages" / package), silent=True)
        files = sorted(str(path) for path in built.iterdir())
        session.run("twine", "check", "--strict", *files)
        session.run("python", str(ROOT / "tests" / "dist" / "check_dists.py"), str(built))

        venv = outside / "venv"
        session.run("python", "-m", "venv", str(venv))
        python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
        wheels = sorted(built.glob("*.whl"))
        core = next(wheel for wheel in wheels if wheel.name.startswith("im_task-"))
        others = [str(wheel) for wheel in wheels if wheel != core]
        pip = [python, "-m", "pip", "--disable-pip-version-check"]
        session.run(*pip, "install", "--quiet", f"im-task[gcp] @ {core.as_uri()}", *others, external=True)
        session.run(*pip, "check", external=True)
        # Copies, so that nothing of the repository is on the path of what runs there.
        shutil.copy(ROOT / "tests" / "dist" / "readme_examples.py", outside)
        shutil.copy(ROOT / "README.md", outside)
        with session.chdir(outside):
            session.run(python, "-I", "readme_examples.py", "README.md", *session.posargs, external=True)


@nox.session
def faults(session: nox.Session) -> None:
    """Fault injection at full size: the transactional outbox (kills, racing sweepers, SQLite and PostgreSQL), then
    the local queue (workers killed with SIGKILL, a full disk, idle CPU, purge and compact).

    ``nox -s faults -- --kills 400`` passes its options to ``tests/faults/outbox_faults.py``;
    ``nox -s faults -- --local-queue-only`` runs only ``tests/faults/local_queue_faults.py``, at its default sizes.
    """
    install_packages(session, "psycopg[binary]>=3.1")
    posargs = [arg for arg in session.posargs if arg != "--local-queue-only"]
    if posargs == session.posargs:
        script = "tests/faults/outbox_faults.py"
        for database in ("sqlite", "postgresql"):
            for names in ([], ["--refuse-names"]):
                session.run("python", script, "--database", database, *names, *posargs)
    for run in ("kill9", "fulldisk", "idle", "compact"):
        session.run("python", "tests/faults/local_queue_faults.py", run)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Fuzzes the endpoints for minutes: coverage-guided with atheris, else a long hypothesis run (it says which).

    ``nox -s fuzz -- --seconds 600`` or ``-- --runs 200000`` sets the budget (default: 5 minutes); the options are
    ``tests/fuzz/endpoint_fuzz.py``'s. It prints the counts and fails when an invariant broke.
    """
    install_packages(session, "hypothesis>=6.100")
    try:
        session.install("--only-binary=:all:", "atheris>=2.3")
    except nox.command.CommandFailed:
        session.log(f"No atheris wheel for Python {session.python or 'of this session'}: hypothesis will run instead.")
    session.run("python", "tests/fuzz/endpoint_fuzz.py", *session.posargs)
