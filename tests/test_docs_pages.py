"""Tables in ``docs/`` that must follow the code: the settings, the adapters' keys, and the core's layers.

A setting added to ``im_task.config.SETTING_NAMES``, or a module added to a
layer of ``.importlinter``, fails here until ``docs/configuration.md`` or
``docs/architecture.md`` lists it; a key an adapter reads, until its page does.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from im_task.adapter_settings import ADAPTER_SETTING_NAMES
from im_task.config import environment_variable
from im_task.setting_values import SETTING_NAMES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def table_rows(page: Path) -> list[list[str]]:
    """The cells of every Markdown table row of ``page`` (header and rule rows included)."""
    rows = []
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and line.endswith("|"):
            rows.append([cell.strip() for cell in line[1:-1].split("|")])
    return rows


def test_the_configuration_page_lists_every_setting_with_its_variable_and_default() -> None:
    rows = {row[0]: row for row in table_rows(DOCS / "configuration.md") if len(row) == 4}
    problems = []
    for name in SETTING_NAMES:
        row = rows.get(f"`{name}`")
        if row is None:
            problems.append(f"{name}: no row")
        elif row[1] != f"`{environment_variable(name)}`":
            problems.append(f"{name}: variable {row[1]}, not `{environment_variable(name)}`")
        elif not row[2] or not row[3]:
            problems.append(f"{name}: no default or no meaning")
    documented = {cell.strip("`") for cell in rows if cell.startswith("`")}
    assert problems == []
    assert documented == set(SETTING_NAMES), "docs/configuration.md lists a setting im_task.config does not know"


def layer_modules() -> list[str]:
    """Every module named in the layers of the ``core-layers`` contract of ``.importlinter``."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter", encoding="utf-8")
    layers = parser["importlinter:contract:core-layers"]["layers"]
    return [name.strip() for line in layers.splitlines() for name in re.split(r"[:|]", line) if name.strip()]


def test_the_architecture_page_lists_every_module_of_the_layers() -> None:
    modules = layer_modules()
    assert modules[0] == "__main__"  # the parse found the contract, from its top
    assert modules[-1] == "errors"
    listed = set()
    for row in table_rows(DOCS / "architecture.md"):
        if len(row) == 3:
            listed.update(re.findall(r"`([\w.]+)`", row[1]))
    assert [module for module in modules if module not in listed] == []
    assert sorted(listed - set(modules)) == []


def keys_in_first_column(page: Path) -> set[str]:
    """Every name in backquotes in the first cell of the tables of ``page``."""
    return {name for row in table_rows(page) for name in re.findall(r"`([\w.]+)`", row[0])}


def test_the_flask_page_lists_every_config_key() -> None:
    flask_extension = pytest.importorskip("im_task_flask.extension", reason="im-task-flask is not installed")
    assert sorted(set(flask_extension.CONFIG_KEYS) - keys_in_first_column(DOCS / "flask.md")) == []


def test_the_django_page_lists_every_key_of_im_task() -> None:
    pytest.importorskip("django", reason="Django is not installed")
    django_conf = pytest.importorskip("im_task_django.conf", reason="im-task-django is not installed")
    assert sorted(set(django_conf.SETTING_NAMES) - keys_in_first_column(DOCS / "django.md")) == []


def test_the_webapp2_page_lists_every_key_of_its_config() -> None:
    names = {*SETTING_NAMES, *ADAPTER_SETTING_NAMES}
    assert sorted(names - keys_in_first_column(DOCS / "webapp2.md")) == []


def test_the_django_page_lists_every_system_check() -> None:
    source = (ROOT / "packages/im_task_django/src/im_task_django/checks.py").read_text(encoding="utf-8")
    ids = set(re.findall(r"im_task\.[EW]\d{3}", source))  # its docstring's table and its code
    assert len(ids) > 10, "the check ids were not found in checks.py"
    assert sorted(ids - keys_in_first_column(DOCS / "django.md")) == []
