"""Bound envelopes: a task's envelope runs only under its own path and queue, until it expires, with its own headers.

Each attack replays a genuine envelope the way the red-team pass did (another
path, another queue, years later, with swapped headers) over real HTTP
(``serve_wsgi(TaskWSGIApp())`` on 127.0.0.1) or through the endpoint handler,
and checks that nothing ran. The golden envelopes at the end pin the wire
format of every version, so that a change to it fails here before it fails
every queued task after a deploy.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from im_task_testsupport import sink
from im_task_testsupport.raw_http import Client

from im_task import ConfigurationError, SignatureError, configure, deferred, task
from im_task.config import get_keyring, get_settings
from im_task.endpoints import handle_request
from im_task.envelope import (
    BOUND_REFERENCE_VERSION,
    BOUND_VERSION,
    REFERENCE_VERSION,
    VERSION,
    Binding,
    PayloadReference,
    seal,
    seal_reference,
    unseal,
)
from im_task.headers import CLOUDTASKS, Headers, make_task_headers
from im_task.keys import KEY_ID_SIZE, Keyring
from im_task.serialization import TaskCall, dumps_call
from im_task.testing import queue_delivery_headers, serve_wsgi
from im_task.transports import RecordingTransport
from im_task.transports.base import TaskRequest
from im_task.wsgi import TaskWSGIApp

DAY = 24 * 3600


@task
def transfer(amount: int, to: str) -> None:
    sink.record(("transfer", amount, to))


@task(includeheaders=True, headers={"X-Tenant": "acme"})
def tenant_work(headers: Any) -> None:
    sink.record(("tenant", headers.get("X-Tenant"), headers.get("X-Other")))


def outer() -> Any:
    @task
    def inner(value: int) -> None:
        sink.record(("inner", value))

    return inner


@pytest.fixture
def recorder(im_task_recorder: RecordingTransport) -> RecordingTransport:
    return im_task_recorder


def deliver(request: TaskRequest, *, path: str | None = None, queue: str | None = None, **headers: str) -> int:
    """Delivers a recorded task through the endpoints as its queue would, optionally under another path or queue."""
    sent = {
        **make_task_headers(queue_name=queue or request.queue, task_name="t-1"),
        **request.headers,
        **headers,
    }
    return handle_request("POST", path or request.url, request.body, sent, "10.0.0.1").status


# --- what a task's envelope is bound to ------------------------------------------------------------------------


def test_a_task_envelope_is_bound_to_its_path_queue_headers_and_expiry(recorder: RecordingTransport) -> None:
    before = time.time()
    tenant_work.using(queue="mail", countdown=3600)()
    [request] = recorder.requests
    opened = unseal(request.body, get_keyring())
    binding = opened.binding
    assert request.body[0] == BOUND_VERSION
    assert binding is not None
    assert (binding.path, binding.queue, dict(binding.headers)) == (request.url, "mail", {"X-Tenant": "acme"})
    assert before - 1 <= binding.made <= time.time()
    # expires 31 days (the default envelope_lifetime) after the task is due, an hour from now
    assert binding.expires is not None
    assert abs(binding.expires - (before + 3600 + 31 * DAY)) < 5
    assert len(binding.task_id) == 24


def test_each_task_has_its_own_id(recorder: RecordingTransport) -> None:
    transfer(1, "a")
    transfer(1, "a")
    ids = {unseal(r.body, get_keyring()).binding.task_id for r in recorder.requests}  # type: ignore[union-attr]
    assert len(ids) == 2


def test_a_genuine_delivery_runs(recorder: RecordingTransport) -> None:
    transfer(100, "alice")
    assert deliver(recorder.requests[0]) == 200
    assert sink.calls == [("transfer", 100, "alice")]


@pytest.mark.parametrize(
    "path",
    [
        "/_ah/task/anything/at/all",
        "/_ah/task/test_bound_envelopes/tenant_work",
        "/_ah/task",
        "/_ah/queue/deferred",
        "/_ah/queue/default",
    ],
)
def test_a_replay_under_another_path_is_403_and_runs_nothing(
    recorder: RecordingTransport, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    transfer(100, "alice")
    assert deliver(recorder.requests[0], path=path) == 403
    assert sink.calls == []
    assert any("bound to the path" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_a_replay_under_another_queue_is_403(recorder: RecordingTransport) -> None:
    transfer(100, "alice")
    assert deliver(recorder.requests[0], queue="other") == 403
    assert sink.calls == []


def test_the_queue_may_be_named_by_its_full_path(recorder: RecordingTransport) -> None:
    transfer(5, "bob")
    request = recorder.requests[0]
    assert deliver(request, queue=f"projects/p/locations/l/queues/{request.queue}") == 200


@pytest.mark.parametrize(
    "prefix",
    ["/mounted", "/_ah/task/anything/at/all", "/_ah/queue/deferred", "/_ah/queue/x", "/", "/_ah/task/evil"],
)
def test_a_replay_under_a_path_that_ends_with_the_bound_one_is_403(recorder: RecordingTransport, prefix: str) -> None:
    transfer(7, "carol")
    request = recorder.requests[0]
    assert deliver(request, path=prefix + request.url) == 403
    assert deliver(request, path=request.url + "/more") == 403
    assert sink.calls == []


def test_the_path_is_decoded_once(recorder: RecordingTransport) -> None:
    transfer(7, "carol")
    request = recorder.requests[0]
    module, function = request.url.rsplit("/", 1)
    assert deliver(request, path=f"{module}%2F{function}") == 403  # a server decodes %2F before the endpoint sees it
    assert deliver(request, path=request.url.replace("/", "%2F")) == 403
    assert deliver(request) == 200


def test_the_binding_is_to_the_path_without_a_query_string(recorder: RecordingTransport) -> None:
    transfer.using(url="/_ah/task/with/query?x=1")(1, "q")
    [request] = recorder.requests
    assert unseal(request.body, get_keyring()).binding.path == "/_ah/task/with/query"  # type: ignore[union-attr]
    assert deliver(request, path="/_ah/task/with/query") == 200


def test_a_nested_task_is_bound_to_its_own_url_whatever_its_depth(recorder: RecordingTransport) -> None:
    inner = outer()
    inner(3)
    [request] = recorder.requests
    assert request.url.endswith("/outer/inner")
    assert unseal(request.body, get_keyring()).binding.path == request.url  # type: ignore[union-attr]
    assert deliver(request, path=request.url.rsplit("/", 1)[0]) == 403
    assert deliver(request) == 200
    assert sink.calls == [("inner", 3)]


def test_deferred_tasks_are_bound_to_the_deferred_url(recorder: RecordingTransport) -> None:
    deferred.defer(sink.record, "deferred ran")
    [request] = recorder.requests
    assert request.url == "/_ah/queue/deferred"
    assert deliver(request, path="/_ah/task/x/y") == 403
    assert deliver(request) == 200
    assert sink.calls == ["deferred ran"]


def test_an_expired_envelope_is_403(caplog: pytest.LogCaptureFixture) -> None:
    made = time.time() - 2 * DAY
    binding = Binding.for_task(path="/_ah/task/app/work", queue="default", headers={}, lifetime=DAY, now=made)
    body = seal(dumps_call(TaskCall(sink.record, ("late",))), get_keyring(), binding)
    headers = make_task_headers(queue_name="default", task_name="t-1")
    assert handle_request("POST", "/_ah/task/app/work", body, headers, "10.0.0.1").status == 403
    assert sink.calls == []
    assert any("expired" in r.getMessage() for r in caplog.records)


def test_envelope_lifetime_shortens_what_is_accepted(recorder: RecordingTransport) -> None:
    configure(envelope_lifetime=60)
    transfer(1, "a")
    binding = unseal(recorder.requests[0].body, get_keyring()).binding
    assert binding is not None
    assert binding.expires is not None
    assert binding.expires - time.time() < 62
    assert binding.refusal(path=binding.path, queue=binding.queue, now=time.time() + 120) is not None
    assert binding.refusal(path=binding.path, queue=binding.queue) is None


def test_shortening_envelope_lifetime_at_the_endpoint_applies_to_envelopes_made_before(
    recorder: RecordingTransport,
) -> None:
    made = time.time() - 2 * 3600
    binding = Binding.for_task(path="/_ah/task/app/work", queue="default", headers={}, lifetime=DAY, now=made)
    body = seal(dumps_call(TaskCall(sink.record, ("two hours old",))), get_keyring(), binding)
    headers = make_task_headers(queue_name="default", task_name="t-1")
    assert handle_request("POST", "/_ah/task/app/work", body, headers, None).status == 200
    configure(envelope_lifetime=3600)  # the endpoint's own setting, shortened after the envelope was made
    response = handle_request("POST", "/_ah/task/app/work", body, headers, None)
    assert response.status == 403
    assert "older than this endpoint's envelope_lifetime" in str(response.exception)
    assert sink.calls == ["two hours old"]


@pytest.mark.parametrize("value", [0, 59, 32 * DAY, "soon", True, -1])
def test_envelope_lifetime_is_validated(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="envelope_lifetime must be a number of seconds"):
        configure(envelope_lifetime=value)


def test_envelope_lifetime_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import im_task.config

    im_task.config.reset()
    monkeypatch.setenv("IM_TASK_ENVELOPE_LIFETIME", "3600")
    monkeypatch.setenv("IM_TASK_ACCEPT_UNBOUND_ENVELOPES", "false")
    settings = get_settings()
    assert (settings.envelope_lifetime, settings.accept_unbound_envelopes) == (3600.0, False)


# --- the task sees the signed headers, not the caller's ------------------------------------------------------


def test_the_task_sees_its_signed_headers_not_the_callers(recorder: RecordingTransport) -> None:
    tenant_work()
    request = recorder.requests[0]
    assert deliver(request, **{"X-Tenant": "evil", "X-Other": "injected"}) == 200
    assert sink.calls == [("tenant", "acme", None)]


def test_headers_for_the_task_keep_the_queue_headers() -> None:
    from im_task.executor import _headers_for_task

    binding = Binding.for_task(path="/p", queue="q", headers={"X-Tenant": "acme"}, lifetime=60)
    given = {
        "X-AppEngine-TaskName": "t",
        "X-AppEngine-TaskRetryCount": "1",
        "X-AppEngine-User-Is-Admin": "1",  # anyone may send it outside App Engine: not a task header
        "X-CloudTasks-TaskName": "other family",
        "X-Tenant": "evil",
        "Cookie": "c",
    }
    seen = _headers_for_task(Headers(given), binding, "X-AppEngine-")
    assert dict(seen.items()) == {
        "X-AppEngine-TaskName": "t",
        "X-AppEngine-TaskRetryCount": "1",
        "Content-Type": "application/octet-stream",
        "X-Tenant": "acme",
    }


# --- the retry count header -------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", ["-5", "-1", "1.5", "x", "0x10", "9999999999", "\uff11"])
def test_a_malformed_retry_or_execution_count_is_refused(recorder: RecordingTransport, count: str) -> None:
    transfer(1, "a")
    request = recorder.requests[0]
    assert deliver(request, **{"X-AppEngine-TaskRetryCount": count}) == 403
    assert deliver(request, **{"X-AppEngine-TaskExecutionCount": count}) == 403
    assert sink.calls == []


def test_the_retry_limit_counts_the_queues_retries(recorder: RecordingTransport) -> None:
    transfer.using(retry_options={"task_retry_limit": 1})(1, "a")
    request = recorder.requests[0]
    assert (
        handle_request("POST", request.url, request.body, queue_delivery_headers(request, retry_count=2)).status == 200
    )
    assert sink.calls == []  # gave up: the count is the queue's, proven
    assert (
        handle_request("POST", request.url, request.body, queue_delivery_headers(request, retry_count=1)).status == 200
    )
    assert sink.calls == [("transfer", 1, "a")]


def test_a_retry_count_without_proof_decides_nothing(recorder: RecordingTransport) -> None:
    transfer.using(retry_options={"task_retry_limit": 1})(1, "a")
    request = recorder.requests[0]
    assert deliver(request, **{"X-AppEngine-TaskRetryCount": "2"}) == 200  # development accepts the caller...
    assert sink.calls == [("transfer", 1, "a")]  # ...but not its count: the queue's own limit applies


# --- envelopes made before binding: a rolling deploy ------------------------------------------------------------


def unbound_envelope() -> bytes:
    return seal(dumps_call(TaskCall(sink.record, ("old task",))), get_keyring())


def test_unbound_envelopes_run_during_a_rolling_deploy_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    headers = make_task_headers(queue_name="default", task_name="t-1")
    for _ in range(2):
        assert handle_request("POST", "/_ah/task/app/work", unbound_envelope(), headers, None).status == 200
    assert sink.calls == ["old task", "old task"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unbound envelope" in r.getMessage()]
    assert len(warnings) == 1
    assert "accept_unbound_envelopes" in warnings[0].getMessage()


def test_unbound_envelopes_are_refused_once_accept_unbound_envelopes_is_off() -> None:
    configure(accept_unbound_envelopes=False)
    headers = make_task_headers(queue_name="default", task_name="t-1")
    response = handle_request("POST", "/_ah/task/app/work", unbound_envelope(), headers, None)
    assert response.status == 403
    assert isinstance(response.exception, SignatureError)
    assert "accept_unbound_envelopes is off" in str(response.exception)
    assert sink.calls == []


def test_a_serialized_call_runs_at_the_deferred_endpoints_but_never_at_the_task_endpoint() -> None:
    data = deferred.serialize(sink.record, "serialized")
    headers = make_task_headers(queue_name="any-queue", task_name="t-1")
    response = handle_request("POST", "/_ah/task/app/work", data, headers, None)
    assert response.status == 403
    assert "only the deferred endpoints run" in str(response.exception)
    assert sink.calls == []
    for path in ("/_ah/queue/deferred", "/_ah/queue/mail"):
        assert handle_request("POST", path, data, headers, None).status == 200
    deferred.run(data)
    assert sink.calls == ["serialized"] * 3


def test_a_serialized_call_expires_at_the_endpoints_but_not_for_run() -> None:
    binding = Binding.for_serialized(lifetime=60, now=time.time() - 120)
    data = seal(dumps_call(TaskCall(sink.record, ("old",))), get_keyring(), binding)
    headers = make_task_headers(queue_name="default", task_name="t-1")
    assert handle_request("POST", "/_ah/queue/deferred", data, headers, None).status == 403
    deferred.run(data)
    assert sink.calls == ["old"]


# --- payloads in the payload store: version 4 -----------------------------------------------------------------


def test_a_stored_payload_is_bound_too(recorder: RecordingTransport) -> None:
    transfer(1, "x" * 200_000)
    request = recorder.requests[0]
    assert request.body[0] == BOUND_REFERENCE_VERSION
    opened = unseal(request.body, get_keyring())
    assert isinstance(opened.payload, PayloadReference)
    assert opened.binding is not None
    assert opened.binding.path == request.url
    assert deliver(request, path="/_ah/task/elsewhere") == 403
    assert sink.calls == []
    assert deliver(request) == 200
    assert sink.calls == [("transfer", 1, "x" * 200_000)]


# --- over real HTTP ---------------------------------------------------------------------------------------------


def test_over_http_the_captured_envelope_runs_once_under_its_path_and_nowhere_else(
    recorder: RecordingTransport,
) -> None:
    transfer(100, "alice")
    request = recorder.requests[0]
    with serve_wsgi(TaskWSGIApp()) as url:
        client = Client(url)

        def post(path: str, queue: str, family: str = "X-AppEngine-") -> int:
            headers = make_task_headers(queue_name=queue, task_name="t-1", family=family)
            if family == CLOUDTASKS:
                headers = make_task_headers(queue_name=queue, task_name="t-1", family=CLOUDTASKS)
            sent = [*headers.items(), ("Content-Type", "application/octet-stream")]
            return client.request("POST", path, request.body, sent).status

        assert post("/_ah/task/anything/at/all", request.queue) == 403
        assert post("/_ah/queue/deferred", request.queue) == 403
        assert post(request.url, "another-queue") == 403
        assert sink.calls == []
        assert post(request.url, request.queue) == 200
        assert sink.calls == [("transfer", 100, "alice")]


@task
def café(value: int) -> None:  # noqa: PLC2401 - a task whose URL is not ASCII
    sink.record(("café", value))


def test_over_http_a_task_whose_path_is_not_ascii_runs(recorder: RecordingTransport) -> None:
    café(1)
    request = recorder.requests[0]
    assert request.url.endswith("/caf%C3%A9")
    headers = [*make_task_headers(queue_name=request.queue, task_name="t-1").items(), *request.headers.items()]
    with serve_wsgi(TaskWSGIApp()) as url:
        client = Client(url)
        assert client.request("POST", request.url, request.body, headers).status == 200
        assert client.request("POST", request.url.replace("%C3%A9", "%E9"), request.body, headers).status == 403
    assert sink.calls == [("café", 1)]


# --- the wire format: golden envelopes of every version ----------------------------------------------------------

GOLDEN_KEY = b"golden envelope key, 32 bytes.."
GOLDEN_REFERENCE = PayloadReference("local", "k1", "ab" * 32, 14)
GOLDEN_BINDING = Binding(
    "/_ah/task/app/work",
    "default",
    1700000000,
    1702678400,
    "0123456789abcdef01234567",
    {"X-Tenant": "acme"},
    1700000060,
)
#: Envelopes as im-task wrote them, by version; each must keep verifying and reading the same.
GOLDEN = {
    VERSION: (
        "01f88ec2ef979ba399604d9c57d9d3eff57aae2f27dc392304979baf528080158917537789196f2450676f6c64656e207061796c6f6164"
    ),
    REFERENCE_VERSION: (
        "02f88ec2ef979ba3996d7b9bd127a1627ae379dab4db64a6bc6ec9dabb7501130b1f7374432b5e0b177b226b6579223a"
        "226b31222c22736861323536223a22616261626162616261626162616261626162616261626162616261626162616261"
        "62616261626162616261626162616261626162616261626162616261626162222c2273697a65223a31342c2273746f72"
        "65223a226c6f63616c227d"
    ),
    BOUND_VERSION: (
        "03f88ec2ef979ba399a085d7a3359009053c6fcc62c0b7e043bc61d408f720c4320f53d34a4b1e258c00a57b22647565"
        "223a313730303030303036302c2265787069726573223a313730323637383430302c2268656164657273223a7b22582d"
        "54656e616e74223a2261636d65227d2c226964223a22303132333435363738396162636465663031323334353637222c"
        "226d616465223a313730303030303030302c2270617468223a222f5f61682f7461736b2f6170702f776f726b222c2271"
        "75657565223a2264656661756c74227d676f6c64656e207061796c6f6164"
    ),
    BOUND_REFERENCE_VERSION: (
        "04f88ec2ef979ba3991ce09bf84c9f14be47db478d03982ea2a70d27ff2fe8bb5b6873f12e32911ffe00a57b22647565"
        "223a313730303030303036302c2265787069726573223a313730323637383430302c2268656164657273223a7b22582d"
        "54656e616e74223a2261636d65227d2c226964223a22303132333435363738396162636465663031323334353637222c"
        "226d616465223a313730303030303030302c2270617468223a222f5f61682f7461736b2f6170702f776f726b222c2271"
        "75657565223a2264656661756c74227d7b226b6579223a226b31222c22736861323536223a2261626162616261626162"
        "616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162"
        "616261626162222c2273697a65223a31342c2273746f7265223a226c6f63616c227d"
    ),
}


@pytest.mark.parametrize("version", sorted(GOLDEN))
def test_golden_envelopes_of_every_version_still_verify_and_read_the_same(version: int) -> None:
    body = bytes.fromhex(GOLDEN[version])
    assert body[0] == version
    assert len(body[1 : 1 + KEY_ID_SIZE]) == KEY_ID_SIZE == 8
    opened = unseal(body, Keyring([GOLDEN_KEY]))
    bound = version in (BOUND_VERSION, BOUND_REFERENCE_VERSION)
    assert opened.binding == (GOLDEN_BINDING if bound else None)
    inline = version in (VERSION, BOUND_VERSION)
    assert opened.payload == (b"golden payload" if inline else GOLDEN_REFERENCE)


@pytest.mark.parametrize("version", sorted(GOLDEN))
def test_sealing_today_writes_the_golden_bytes(version: int) -> None:
    keyring = Keyring([GOLDEN_KEY])
    binding = GOLDEN_BINDING if version in (BOUND_VERSION, BOUND_REFERENCE_VERSION) else None
    if version in (VERSION, BOUND_VERSION):
        body = seal(b"golden payload", keyring, binding)
    else:
        body = seal_reference(GOLDEN_REFERENCE, keyring, binding)
    assert body.hex() == GOLDEN[version]


@pytest.mark.parametrize("version", sorted(GOLDEN))
def test_a_golden_envelope_with_its_version_byte_changed_does_not_verify(version: int) -> None:
    body = bytearray.fromhex(GOLDEN[version])
    for other in range(256):
        if other != version:
            body[0] = other
            with pytest.raises(SignatureError):
                unseal(bytes(body), Keyring([GOLDEN_KEY]))


def test_a_signed_but_malformed_binding_is_refused() -> None:
    from im_task.envelope import _seal

    keyring = Keyring([GOLDEN_KEY])
    for data in (b"{}", b"[]", b"not json", json.dumps({"path": 1}).encode()):
        body = _seal(BOUND_VERSION, len(data).to_bytes(2, "big") + data + b"payload", keyring)
        with pytest.raises(SignatureError, match="malformed binding"):
            unseal(body, keyring)
    truncated = _seal(BOUND_VERSION, (500).to_bytes(2, "big") + b"{}", keyring)
    with pytest.raises(SignatureError, match="truncated binding"):
        unseal(truncated, keyring)
