"""App Engine ``deferred``'s endpoints through every adapter over real HTTP: the same request contract."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from conformance_support import Served, queue_headers
from im_task_testsupport import sink as conformance_recorder

from im_task import deferred
from im_task.runtime import get_transport
from im_task.transports import RecordingTransport, TaskRequest

SECRET_MESSAGE = "do-not-echo-this-0452"


def ran(*values: Any) -> None:
    conformance_recorder.record("ran", *values)


def fails(kind: str) -> None:
    conformance_recorder.record("attempt", kind)
    if kind == "permanent":
        raise deferred.PermanentTaskFailure(SECRET_MESSAGE)
    if kind == "singular":
        raise deferred.SingularTaskFailure(SECRET_MESSAGE)
    raise RuntimeError(SECRET_MESSAGE)


class Account:
    def __init__(self, owner: str) -> None:
        self.owner = owner

    def credit(self, amount: int) -> None:
        conformance_recorder.record("credit", self.owner, amount)


def deferred_request(obj: Any, *args: Any, **kwargs: Any) -> TaskRequest:
    """Defers a call and returns the request the recording transport received."""
    transport = get_transport()
    assert isinstance(transport, RecordingTransport)
    before = len(transport.requests)
    deferred.defer(obj, *args, **kwargs)
    assert len(transport.requests) == before + 1
    return transport.requests[-1]


def test_a_deferred_call_runs_at_the_deferred_url(served_app: Served) -> None:
    request = deferred_request(ran, "hello", _countdown=5)
    assert request.url == "/_ah/queue/deferred"
    reply = served_app.deliver(request)
    assert reply.status == 200
    assert conformance_recorder.events() == [("ran", "hello")]


def test_a_bound_method_runs_at_the_queues_own_url(served_app: Served) -> None:
    request = deferred_request(Account("ada").credit, 5, _url=None, _queue="mail")
    assert request.url == "/_ah/queue/mail"
    assert served_app.deliver(request, queue_name="mail").status == 200
    assert conformance_recorder.events() == [("credit", "ada", 5)]


def test_a_lambda_runs_too(served_app: Served) -> None:
    request = deferred_request(lambda x: conformance_recorder.record("lambda", x * 2), 21)
    assert served_app.deliver(request).status == 200
    assert conformance_recorder.events() == [("lambda", 42)]


@pytest.mark.parametrize(
    ("kind", "status"), [("permanent", 200), ("singular", 408), ("error", 500)], ids=["permanent", "singular", "error"]
)
def test_failures_answer_as_the_contract_says_without_echoing(served_app: Served, kind: str, status: int) -> None:
    reply = served_app.deliver(deferred_request(fails, kind))
    assert reply.status == status
    assert conformance_recorder.events() == [("attempt", kind)]
    assert SECRET_MESSAGE.encode() not in reply.body
    assert b"Traceback" not in reply.body


def test_without_the_task_header_it_is_403_and_nothing_is_unpickled(served_app: Served) -> None:
    request = deferred_request(ran, conformance_recorder.Tripwire())
    reply = served_app.request("POST", request.url, request.body, {"Content-Type": "application/octet-stream"})
    assert reply.status == 403
    assert conformance_recorder.events() == []


def test_an_unsigned_legacy_payload_is_403_and_nothing_is_unpickled(served_app: Served) -> None:
    body = pickle.dumps((conformance_recorder.record, (conformance_recorder.Tripwire(),), {}), protocol=2)
    headers = {"Content-Type": "application/octet-stream", **queue_headers()}
    assert served_app.request("POST", "/_ah/queue/deferred", body, headers).status == 403
    assert conformance_recorder.events() == []


def test_an_undecodable_payload_is_200_and_dropped(served_app: Served) -> None:
    request = deferred_request(ran, "x")
    from im_task.config import get_keyring
    from im_task.envelope import seal

    body = seal(b"\x80\x04not really a pickle", get_keyring())
    assert served_app.deliver(request, body=body).status == 200
    assert conformance_recorder.events() == []


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_other_methods_are_405_with_allow_post(served_app: Served, method: str) -> None:
    for path in ("/_ah/queue/deferred", "/_ah/queue/mail"):
        reply = served_app.request(method, path)
        assert (reply.status, reply.headers.get("Allow")) == (405, "POST")


def test_the_bare_queue_route_is_not_served(served_app: Served) -> None:
    assert served_app.request("POST", "/_ah/queue", b"x").status == 404


def test_an_oversize_deferred_payload_still_runs(served_app: Served) -> None:
    big = "y" * 200_000  # over App Engine's 100 KB inline limit and over the served app's 32 KB body cap
    request = deferred_request(ran, big)
    assert len(request.body) < 1000  # a signed reference to the stored payload
    assert served_app.deliver(request).status == 200
    assert conformance_recorder.events() == [("ran", big)]
