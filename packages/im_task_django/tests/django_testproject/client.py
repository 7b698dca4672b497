"""A small HTTP client for tests: POST a task to a served project and read the answer."""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from im_task_testsupport.proof import proven

from im_task.headers import make_task_headers
from im_task.transports.base import TaskRequest


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def request(
    base_url: str, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> Answer:
    """Sends one HTTP request over a real connection and returns the answer (no redirects followed)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request(method, path, body=body if method != "GET" else None, headers=dict(headers or {}))
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def post_task(base_url: str, task: TaskRequest, *, retry_count: int = 0, with_queue_headers: bool = True) -> Answer:
    """POSTs a recorded task as a queue would, with the App Engine task headers."""
    headers = dict(task.headers)
    if with_queue_headers:  # signed as the local queue signs its deliveries, so that the retry count is trusted
        queue = make_task_headers(
            queue_name=task.queue,
            task_name=task.name or "test-task",
            retry_count=retry_count,
            execution_count=retry_count,
        )
        headers = proven({**headers, **queue}, task.body)
    return request(base_url, "POST", task.url, task.body, headers)
