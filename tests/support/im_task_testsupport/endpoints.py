"""Endpoints added to the core's endpoint table in tests: a real echo handler at an exact path and under a prefix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO

import pytest

import im_task.endpoints
from im_task.endpoints import Endpoint
from im_task.response import TaskResponse, answer

__all__ = ["PROBE", "TREE", "add_endpoints", "echo"]


def echo(
    method: str, path: str, body: bytes | IO[bytes], headers: Mapping[str, str], remote_addr: str | None = None
) -> TaskResponse:
    """A small real endpoint: answers ``echo <method> <path> <body>``."""
    data = body if isinstance(body, bytes) else body.read(int(headers.get("Content-Length") or 0))
    return answer(200, f"echo {method} {path} {data.decode()}", **{"X-Endpoint": "echo"})


#: An exact endpoint: ``/_ah/probe`` only.
PROBE = Endpoint("probe", echo, lambda: "/_ah/probe", prefix=False)
#: A prefix endpoint: every path under ``/_ah/tree``.
TREE = Endpoint("tree", echo, lambda: "/_ah/tree", prefix=True)


def add_endpoints(monkeypatch: pytest.MonkeyPatch, *added: Endpoint) -> list[Endpoint]:
    """Makes the core's table the task endpoint and these (``PROBE`` and ``TREE`` by default), for one test.

    The core's other endpoints (deferred, sweep...) are left out, so that a
    test of how an adapter mounts the table sees exactly what it added.

    Returns:
        The table in force.
    """
    table = [im_task.endpoints.TASK_ENDPOINT, *(added or (PROBE, TREE))]
    monkeypatch.setattr(im_task.endpoints, "ENDPOINTS", table)
    return table
