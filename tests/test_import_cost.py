"""What importing im-task loads: only what is used (issue: App Engine pays every import on each cold start)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sqlite3", "http.client", "ssl", "email", "cloudpickle", "asyncio", "grpc", "google")
LOCAL_QUEUE = "im_task.transports.local"


def loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m in HEAVY or m.split(".")[0] in HEAVY or m.startswith(LOCAL_QUEUE)}


@pytest.mark.parametrize(
    "code",
    [
        "import im_task",
        "from im_task import task, configure, set_taskroute",
        "from im_task import task\n@task\ndef f(): pass",
        "import im_task.transports",
        "from im_task.transports import RecordingTransport",
    ],
)
def test_the_core_loads_no_sqlite_http_client_email_ssl_cloudpickle_nor_local_queue(code: str) -> None:
    assert heavy(loaded_by(code)) == set()


def test_the_local_queue_is_loaded_when_it_is_used() -> None:
    modules = loaded_by("from im_task.transports import LocalTransport")
    assert {"sqlite3", "http.client", f"{LOCAL_QUEUE}.transport"} <= modules


def test_sending_a_task_loads_cloudpickle_then() -> None:
    # A closure needs cloudpickle (its code travels by value); a module-level function with plain
    # arguments travels by reference with the standard pickle, and does not load it (see below).
    code = (
        "from im_task import task, configure\nfrom im_task.transports import RecordingTransport\n"
        "configure(transport=RecordingTransport(), secret='a-test-secret-of-32-or-more-bytes')\n"
        "@task\ndef f(g): pass\nf(lambda: None)"
    )
    modules = loaded_by(code)
    assert "cloudpickle" in modules
    assert not {m for m in modules if m.startswith(LOCAL_QUEUE) or m == "sqlite3"}


def test_sending_a_plain_call_needs_no_cloudpickle() -> None:
    code = (
        "from im_task import task, configure\nfrom im_task.transports import RecordingTransport\n"
        "configure(transport=RecordingTransport(), secret='a-test-secret-of-32-or-more-bytes')\n"
        "@task\ndef f(a, b=None): pass\nf(1, b='two')"
    )
    modules = loaded_by(code)
    assert "cloudpickle" not in modules
    assert not {m for m in modules if m.startswith(LOCAL_QUEUE) or m == "sqlite3"}


@pytest.mark.parametrize(
    ("distribution", "framework", "adapter"),
    [
        ("flask", "flask", "im_task_flask"),
        ("django", "django", "im_task_django"),
        ("webapp2", "im_task_webapp2._compat", "im_task_webapp2"),  # the shim that imports webapp2 on Python 3.11+
    ],
)
def test_an_adapter_adds_nothing_heavy_to_its_framework(distribution: str, framework: str, adapter: str) -> None:
    pytest.importorskip(distribution)
    assert heavy(loaded_by(f"import {framework}\nimport {adapter}")) == heavy(loaded_by(f"import {framework}"))
