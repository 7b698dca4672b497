"""The repository's root conftest: the one ``sys.path`` set-up of the project's tests.

Tasks pickle the modules they use by reference when those modules are
importable by name, so the test helper modules that tasks use (the shared
:mod:`im_task_testsupport`, and each test directory's task and helper
modules such as ``core_reference_tasks`` or ``django_testproject``) must be
on ``sys.path``. Test modules themselves are imported with
``--import-mode=importlib`` and need none of this. The fixtures for tests
come from im-task's pytest plugin (:mod:`im_task.testing.plugin`).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

#: Directories whose modules tests and tasks import by name; their module names do not clash.
IMPORTABLE = (
    ROOT / "tests" / "support",
    ROOT / "tests" / "conformance",
    ROOT / "packages" / "im_task_core" / "tests",
    ROOT / "packages" / "im_task_flask" / "tests",
    ROOT / "packages" / "im_task_webapp2" / "tests",
    ROOT / "packages" / "im_task_django" / "tests",
)

for directory in reversed(IMPORTABLE):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
