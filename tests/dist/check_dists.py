"""Checks the built sdists and wheels of the four packages: ``python check_dists.py DIST_DIR``.

Run by ``nox -s dist`` after ``python -m build`` and ``twine check --strict``.
For each package it checks that there is one sdist and one wheel, both of the
one version (the core's ``im_task.__version__``); that the wheel holds its
``py.typed``, its license file (the Apache-2.0 text) and no tests or caches;
that the sdist holds what a wheel is built from and no tests or caches; and
that the metadata has what PyPI shows: Requires-Python, the license, the
four Project-URLs, known classifiers (with ``trove-classifiers`` installed),
a README with absolute links only that warns about the Python 2 releases in
its first lines, and, for an adapter, a dependency on ``im-task>=2,<3``.
Prints one line per file and exits with status 1 listing every problem.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Distribution name -> import name.
PACKAGES = {
    "im-task": "im_task",
    "im-task-flask": "im_task_flask",
    "im-task-django": "im_task_django",
    "im-task-webapp2": "im_task_webapp2",
}
PROJECT_URLS = ("Documentation", "Source", "Issues", "Changelog")
#: Parts of a path that no distribution may hold.
FORBIDDEN = re.compile(
    r"(^|/)(tests?|__pycache__|\.pytest_cache|\.mypy_cache|\.ruff_cache|\.nox|\.im_task)(/|$)"
    r"|\.py[cod]$|conftest\.py$"
)
RELATIVE_LINK = re.compile(r"\]\((?!https?://|#)(?P<target>[^)]+)\)")
#: Words the first lines of every package README must hold: the warning about the Python 2 releases on PyPI.
WARNING_WORDS = ("Python 3.10", "0.1", ">=2")


def core_version() -> str:
    source = (ROOT / "packages" / "im_task_core" / "src" / "im_task" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "(?P<version>[^"]+)"$', source, re.MULTILINE)
    if match is None:
        raise SystemExit('packages/im_task_core/src/im_task/__init__.py defines no __version__ = "..."')
    return match["version"]


def known_classifiers() -> set[str] | None:
    try:
        from trove_classifiers import classifiers
    except ImportError:
        return None
    return set(classifiers)


def check_metadata(name: str, metadata: Message, where: str, problems: list[str]) -> None:
    """The metadata PyPI shows."""
    if metadata["Name"] != name:
        problems.append(f"{where}: Name is {metadata['Name']!r}, not {name!r}")
    if metadata["Requires-Python"] != ">=3.10":
        problems.append(f"{where}: Requires-Python is {metadata['Requires-Python']!r}, not '>=3.10'")
    if metadata["License-Expression"] != "Apache-2.0":
        problems.append(f"{where}: License-Expression is {metadata['License-Expression']!r}, not 'Apache-2.0'")
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL") or [])
    for label in PROJECT_URLS:
        if not urls.get(label, "").startswith("https://"):
            problems.append(f"{where}: no https Project-URL {label!r} (has {sorted(urls)})")
    classifiers = metadata.get_all("Classifier") or []
    known = known_classifiers()
    for classifier in classifiers:
        if known is not None and classifier not in known:
            problems.append(f"{where}: unknown classifier {classifier!r}")
    for version in ("3.10", "3.11", "3.12", "3.13"):
        if f"Programming Language :: Python :: {version}" not in classifiers:
            problems.append(f"{where}: no classifier for Python {version}")
    requires = metadata.get_all("Requires-Dist") or []
    if name != "im-task" and not any(re.fullmatch(r"im-task\s*(<3,\s*>=2|>=2,\s*<3)", r) for r in requires):
        problems.append(f"{where}: does not require im-task>=2,<3 (Requires-Dist: {requires})")
    if metadata["Description-Content-Type"] != "text/markdown":
        problems.append(f"{where}: the README is not text/markdown")
    readme = metadata.get_payload()
    assert isinstance(readme, str)
    for link in RELATIVE_LINK.finditer(readme):
        problems.append(f"{where}: the README links to {link['target']!r}, which means nothing on PyPI")
    opening = "\n".join(readme.splitlines()[:12])
    missing = [word for word in WARNING_WORDS if word not in opening]
    if missing:
        problems.append(f"{where}: the README's first lines do not warn about Python < 3.10 (lack {missing})")


def check_wheel(path: Path, name: str, version: str, problems: list[str]) -> None:
    module = PACKAGES[name]
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        info = f"{module}-{version}.dist-info"
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        if f"{module}/py.typed" not in names:
            problems.append(f"{path.name}: no {module}/py.typed")
        license_text = wheel.read(f"{info}/licenses/LICENSE").decode() if f"{info}/licenses/LICENSE" in names else ""
        if "Apache License" not in license_text or "Version 2.0" not in license_text:
            problems.append(f"{path.name}: no {info}/licenses/LICENSE with the Apache-2.0 text")
        problems.extend(f"{path.name}: holds {member}" for member in names if FORBIDDEN.search(member))
        strays = sorted({member.split("/")[0] for member in names} - {module, info})
        if strays:
            problems.append(f"{path.name}: holds top-level {strays} besides {module} and {info}")
        init = wheel.read(f"{module}/__init__.py").decode()
        declared = re.search(r'^__version__ = "(?P<version>[^"]+)"$', init, re.MULTILINE)
        if declared is not None and declared["version"] != version:
            problems.append(f"{path.name}: {module}.__version__ is {declared['version']!r}, not {version!r}")
    if metadata["Version"] != version:
        problems.append(f"{path.name}: version {metadata['Version']!r}, not {version!r}")
    check_metadata(name, metadata, path.name, problems)


def check_sdist(path: Path, name: str, version: str, problems: list[str]) -> None:
    module = PACKAGES[name]
    top = f"{module}-{version}"
    with tarfile.open(path) as sdist:
        names = [member.name for member in sdist.getmembers() if member.isfile()]
        pkg_info = sdist.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        metadata = Parser().parsestr(pkg_info.read().decode())
    for needed in (
        "PKG-INFO",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        f"src/{module}/__init__.py",
        f"src/{module}/py.typed",
    ):
        if f"{top}/{needed}" not in names:
            problems.append(f"{path.name}: no {needed}")
    problems.extend(f"{path.name}: holds {member}" for member in names if FORBIDDEN.search(member.removeprefix(top)))
    if metadata["Version"] != version:
        problems.append(f"{path.name}: version {metadata['Version']!r}, not {version!r}")
    check_metadata(name, metadata, path.name, problems)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python check_dists.py DIST_DIR (the directory python -m build wrote to)", file=sys.stderr)
        return 2
    built = Path(argv[0])
    version = core_version()
    problems: list[str] = []
    for name, module in PACKAGES.items():
        wheels = sorted(built.glob(f"{module}-*.whl"))
        sdists = sorted(built.glob(f"{module}-*.tar.gz"))
        if [p.name for p in wheels] != [f"{module}-{version}-py3-none-any.whl"]:
            problems.append(f"{name}: wheels {[p.name for p in wheels]}, wanted {module}-{version}-py3-none-any.whl")
        if [p.name for p in sdists] != [f"{module}-{version}.tar.gz"]:
            problems.append(f"{name}: sdists {[p.name for p in sdists]}, wanted {module}-{version}.tar.gz")
        for wheel in wheels:
            check_wheel(wheel, name, version, problems)
            print(f"checked {wheel.name}")
        for sdist in sdists:
            check_sdist(sdist, name, version, problems)
            print(f"checked {sdist.name}")
    if known_classifiers() is None:
        print("trove-classifiers is not installed: classifiers were not checked against the known list")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
