"""The local queue's in-process deliveries use a Host that ALLOWED_HOSTS accepts, so Django does not answer 400."""

from __future__ import annotations

import pytest
from django.test import override_settings

from im_task.transports.local.delivery import WSGIDelivery
from im_task_django.wsgi import delivery_host, project_wsgi_application


@pytest.mark.parametrize(
    ("allowed", "debug", "host"),
    [
        (["app.example.com"], False, "app.example.com"),
        ([".example.com"], False, "example.com"),
        (["*"], False, "localhost"),
        (["localhost", "app.example.com"], False, "localhost"),
        ([], True, "localhost"),
    ],
)
def test_the_delivery_host_is_one_allowed_hosts_accepts(allowed: list[str], debug: bool, host: str) -> None:
    with override_settings(ALLOWED_HOSTS=allowed, DEBUG=debug):
        assert delivery_host() == host


def test_an_in_process_delivery_is_not_refused_for_its_host() -> None:
    with override_settings(ALLOWED_HOSTS=["app.example.com"], DEBUG=False):
        outcome = WSGIDelivery(project_wsgi_application).deliver(
            "/_ah/task/nothing/here", b"not a task", {"Content-Type": "application/octet-stream"}, 10.0
        )
    # The endpoint itself answered (it refuses a request without the queue's headers), not Django's host check.
    assert outcome.status == 403
    assert outcome.outcome == "refused"
