"""The retry count decides only when the caller proved it is the queue: the signed proof of im-task's own queues."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport import sink

from im_task import configure, task
from im_task.caller import CallerPolicy, check_caller
from im_task.config import get_keyring, get_settings
from im_task.deliveryproof import PROOF_HEADER, PROOF_LIFETIME, Attempt, proof_headers, proven, signing_keyring
from im_task.errors import ConfigurationError
from im_task.executor import handle_request
from im_task.headers import APPENGINE, CLOUDTASKS, forwardable_headers, make_task_headers
from im_task.keys import Keyring, read_stamp
from im_task.response import OUTCOME_HEADER
from im_task.retry import RetryPolicy
from im_task.runtime import get_transport
from im_task.testing import queue_delivery_headers, serve_wsgi
from im_task.transports import ImmediateTransport, RecordingTransport, TaskRequest
from im_task.transports.local import LocalTransport
from im_task.wsgi import TaskWSGIApp

KEYS = Keyring([b"0123456789abcdefghijklmnopqrstuvwxyz-proof"])
OLD_KEYS = Keyring([b"an-older-secret-of-enough-length-0123456789"])
ATTEMPT = Attempt(queue="default", task_name="t-1", retry_count=2, execution_count=1)
NOW = 1_800_000_000.0


@task(retry_options={"task_retry_limit": 1})
def limited(label: str) -> None:
    sink.record(label)


@task(retry_options={"task_retry_limit": 1, "min_backoff_seconds": 0.01, "max_backoff_seconds": 0.02})
def always_fails(label: str) -> None:
    sink.record(label)
    raise RuntimeError(f"{label} fails")


@pytest.fixture
def recorder(im_task_recorder: RecordingTransport) -> RecordingTransport:
    return im_task_recorder


def post(request: TaskRequest, headers: dict[str, str]) -> Any:
    return handle_request("POST", request.url, request.body, headers, "10.0.0.1")


def by_hand(request: TaskRequest, retry_count: int) -> dict[str, str]:
    """The headers of a delivery made by hand (or by the Cloud Tasks emulator): no proof."""
    return make_task_headers(
        queue_name=request.queue, task_name="t-1", retry_count=retry_count, execution_count=retry_count
    )


# --- the proof itself -------------------------------------------------------------------------------------------


def test_a_proof_verifies_for_exactly_the_attempt_and_body_it_was_made_for() -> None:
    value = proof_headers(ATTEMPT, b"body", KEYS, now=NOW)[PROOF_HEADER]
    assert proven(value, ATTEMPT, b"body", KEYS, now=NOW + 1)
    for other in (
        ATTEMPT._replace(queue="other"),
        ATTEMPT._replace(task_name="t-2"),
        ATTEMPT._replace(retry_count=0),
        ATTEMPT._replace(execution_count=0),
    ):
        assert not proven(value, other, b"body", KEYS, now=NOW)
    assert not proven(value, ATTEMPT, b"another body", KEYS, now=NOW)
    assert not proven(value, ATTEMPT, b"body", OLD_KEYS, now=NOW)


def test_fields_cannot_be_shifted_from_one_to_the_next() -> None:
    value = proof_headers(Attempt("ab", "c", 1, 1), b"", KEYS, now=NOW)[PROOF_HEADER]
    assert not proven(value, Attempt("a", "bc", 1, 1), b"", KEYS, now=NOW)


def test_a_proof_lasts_its_lifetime_either_side_of_the_clock() -> None:
    value = proof_headers(ATTEMPT, b"", KEYS, now=NOW)[PROOF_HEADER]
    assert proven(value, ATTEMPT, b"", KEYS, now=NOW + PROOF_LIFETIME)
    assert proven(value, ATTEMPT, b"", KEYS, now=NOW - PROOF_LIFETIME)
    assert not proven(value, ATTEMPT, b"", KEYS, now=NOW + PROOF_LIFETIME + 1)
    assert not proven(value, ATTEMPT, b"", KEYS, now=NOW - PROOF_LIFETIME - 1)


def test_a_proof_signed_with_a_key_being_rotated_out_still_verifies() -> None:
    value = proof_headers(ATTEMPT, b"", OLD_KEYS, now=NOW)[PROOF_HEADER]
    rotated = Keyring([b"0123456789abcdefghijklmnopqrstuvwxyz-proof", b"an-older-secret-of-enough-length-0123456789"])
    assert proven(value, ATTEMPT, b"", rotated, now=NOW)


@pytest.mark.parametrize(
    "value",
    [None, "", "garbage", "1.2.3", "1.2.3.4.5", "nan.0.00.00", "inf.0.00.00", "1800000000.0.zz.00", "x.y.00.00"],
)
def test_a_garbled_proof_proves_nothing(value: str | None) -> None:
    assert not proven(value, ATTEMPT, b"", KEYS, now=NOW)


def test_a_forged_mac_proves_nothing() -> None:
    issued, fraction, kid, mac = proof_headers(ATTEMPT, b"", KEYS, now=NOW)[PROOF_HEADER].split(".")
    forged = f"{issued}.{fraction}.{kid}.{'0' * len(mac)}"
    assert not proven(forged, ATTEMPT, b"", KEYS, now=NOW)


def test_the_proof_header_is_the_queues_to_set() -> None:
    assert forwardable_headers({PROOF_HEADER: "x", "X-Own": "1"}) == {"X-Own": "1"}
    with pytest.raises(ConfigurationError, match="X-Im-Task-Queue-Proof"):
        limited.using(headers={PROOF_HEADER: "forged"})


def test_a_queue_with_no_keyring_to_be_had_signs_nothing() -> None:
    configure(environment="production", transport="recording", secret=None)  # production, no secret: no keyring
    assert signing_keyring(None) is None
    assert signing_keyring(KEYS) is KEYS
    assert signing_keyring(lambda: KEYS) is KEYS


@pytest.mark.parametrize("make", [lambda: LocalTransport, lambda: RecordingTransport])
def test_a_queue_refuses_a_keyring_that_is_not_one(make: Callable[[], type[Any]], tmp_path: Path) -> None:
    args = (tmp_path / "q.sqlite3",) if make() is LocalTransport else ()
    with pytest.raises(ConfigurationError, match="keyring must be a Keyring, a function that returns one, or None"):
        make()(*args, keyring="secret")


# --- which callers are proven -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "family", "expected"),
    [
        (CallerPolicy(production=True, on_app_engine=True), APPENGINE, True),
        (CallerPolicy(production=False, on_app_engine=True), APPENGINE, True),
        (CallerPolicy(production=False, on_app_engine=False), APPENGINE, False),
        (CallerPolicy(production=False, on_app_engine=False), CLOUDTASKS, False),
        (CallerPolicy(production=True, on_app_engine=False, front_authenticated=True), CLOUDTASKS, True),
        (CallerPolicy(production=False, on_app_engine=False, front_authenticated=True), CLOUDTASKS, True),
    ],
)
def test_which_accepted_callers_are_proven(policy: CallerPolicy, family: str, expected: bool) -> None:
    decision = policy.decide(family)
    assert decision.accepted
    assert decision.proven is expected


def test_check_caller_says_whether_the_caller_is_proven(monkeypatch: pytest.MonkeyPatch) -> None:
    headers = make_task_headers(queue_name="default", task_name="t-1")
    assert check_caller(APPENGINE, headers, get_settings()) is False  # development, outside App Engine
    monkeypatch.setenv("GAE_ENV", "standard")
    assert check_caller(APPENGINE, headers, get_settings()) is True


# --- the endpoint -----------------------------------------------------------------------------------------------


def test_a_proven_count_past_the_limit_gives_up_without_running(recorder: RecordingTransport) -> None:
    limited("late")
    [request] = recorder.requests
    response = post(request, queue_delivery_headers(request, retry_count=2, task_name="t-1"))
    assert (response.status, response.outcome) == (200, "gave-up")
    assert sink.events() == []


def test_a_count_without_proof_decides_nothing_and_says_so_once(
    recorder: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    limited("replayed")
    always_fails("failing")
    ran, fails = recorder.requests
    with caplog.at_level(logging.WARNING, logger="im_task"):
        assert post(ran, by_hand(ran, retry_count=5)).status == 200  # past the limit, yet it runs
        response = post(fails, by_hand(fails, retry_count=1))  # the last attempt by its count, yet not given up
    assert sink.events() == ["replayed", "failing"]
    assert (response.status, response.outcome) == (500, "retry")
    notes = [r for r in caplog.records if "its retry count is not trusted" in r.getMessage()]
    assert len(notes) == 1  # once per process
    assert notes[0].levelno == logging.WARNING
    assert "task_retry_limit=1" in notes[0].getMessage()


def test_a_proof_of_another_count_body_or_time_is_no_proof(recorder: RecordingTransport) -> None:
    limited("one")
    limited("two")
    first, second = recorder.requests
    altered = {**queue_delivery_headers(first, retry_count=0, task_name="t-1")}
    altered["X-AppEngine-TaskRetryCount"] = altered["X-AppEngine-TaskExecutionCount"] = "2"
    assert post(first, altered).status == 200  # the count was changed after signing: untrusted, so it ran
    borrowed = queue_delivery_headers(first, retry_count=2, task_name="t-1")
    assert post(second, borrowed).status == 200  # another task's proof: untrusted, so it ran
    stale = make_task_headers(queue_name="default", task_name="t-1", retry_count=2, execution_count=2)
    attempt = Attempt("default", "t-1", 2, 2)
    stale.update(proof_headers(attempt, first.body, get_keyring(), now=time.time() - PROOF_LIFETIME - 5))
    assert post(first, stale).status == 200
    assert sink.events() == ["one", "two", "one"]


def test_a_proof_is_no_credential_where_the_caller_is_refused(recorder: RecordingTransport) -> None:
    configure(environment="production", secret="a-production-secret-of-32-or-more-bytes!", transport=recorder)
    limited("refused")
    [request] = recorder.requests
    response = post(request, queue_delivery_headers(request, task_name="t-1"))  # X-AppEngine-* outside App Engine
    assert response.status == 403
    assert sink.events() == []


def test_in_process_transports_prove_their_deliveries(recorder: RecordingTransport) -> None:
    limited("x")
    [request] = recorder.requests
    assert recorder.deliver(request, retry_count=2).outcome == "gave-up"
    assert recorder.deliver(request, retry_count=1).outcome == "ran"
    assert sink.events() == ["x"]


def test_an_immediate_transport_gives_up_on_the_last_attempt() -> None:
    configure(transport=ImmediateTransport(raise_exceptions=False))
    always_fails.using(retry_options={"task_retry_limit": 0})("now")
    transport = get_transport()
    assert isinstance(transport, ImmediateTransport)
    assert [status for _, status in transport.responses] == [200]  # gave up, proven: not "will be retried"


class _Watch:
    """WSGI middleware keeping, for each delivery, whether it carried a proof and what the endpoint answered."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.seen: list[tuple[bool, str, str | None]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        carried = "HTTP_X_IM_TASK_QUEUE_PROOF" in environ

        def watching(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            outcome = next((v for k, v in headers if k.lower() == OUTCOME_HEADER.lower()), None)
            self.seen.append((carried, status.split(maxsplit=1)[0], outcome))
            return start_response(status, headers, exc_info)

        return self.app(environ, watching)


def test_the_local_queue_proves_each_delivery_over_http(tmp_path: Path) -> None:
    configure(transport=RecordingTransport())  # the enqueuing side; the local queue below delivers over HTTP
    always_fails("over http")
    recording = get_transport()
    assert isinstance(recording, RecordingTransport)
    [request] = recording.requests
    watch = _Watch(TaskWSGIApp())
    with serve_wsgi(watch) as url:
        policy = RetryPolicy(max_attempts=5, min_backoff=0.01, max_backoff=0.02)
        with LocalTransport(tmp_path / "q.sqlite3", target=url, default_policy=policy) as queue:
            queue.enqueue(request)
            queue.join(timeout=30, scheduled=True)
    # Attempt 1 fails (the queue retries); attempt 2 is the last task_retry_limit=1 allows: given up by the
    # endpoint, which trusts the proven count. Without the proof it would answer 500 and leave it to the queue.
    assert watch.seen == [(True, "500", "retry"), (True, "200", "gave-up")]
    assert sink.events() == ["over http", "over http"]


def test_queue_delivery_headers_checks_its_arguments(recorder: RecordingTransport) -> None:
    limited("x")
    [request] = recorder.requests
    with pytest.raises(ValueError, match="retry_count must be a whole number >= 0"):
        queue_delivery_headers(request, retry_count=-1)
    with pytest.raises(ValueError, match="execution_count must be a whole number >= 0"):
        queue_delivery_headers(request, execution_count=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="family must be"):
        queue_delivery_headers(request, family="X-Other-")
    headers = queue_delivery_headers(request, retry_count=3, family=CLOUDTASKS, keyring=KEYS)
    assert headers["X-CloudTasks-TaskRetryCount"] == "3"
    attempt = Attempt(request.queue, str(request.name), 3, 3)
    assert proven(headers[PROOF_HEADER], attempt, request.body, KEYS)


def test_queue_delivery_headers_refuses_what_is_not_a_request_name_or_keyring(recorder: RecordingTransport) -> None:
    limited("x")
    [request] = recorder.requests
    with pytest.raises(ValueError, match="request must be a TaskRequest"):
        queue_delivery_headers({})  # type: ignore[arg-type]
    for name in (123, "a\r\nX-Evil: 1", "\ud800", ""):
        with pytest.raises(ValueError, match="task_name must be None or a task name"):
            queue_delivery_headers(request, task_name=name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"keyring must be an im_task\.keys\.Keyring or None, not bytes"):
        queue_delivery_headers(request, keyring=b"secret")  # type: ignore[arg-type]


def test_a_keyring_function_that_returns_something_else_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="The keyring= function of the queue returned bytes, not an"):
        signing_keyring(lambda: b"secret")  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1800000000.500000.0a0b.ff", (1_800_000_000.5, b"\n\x0b", b"\xff")),
        ("1800000000.5.0a0b", None),
        ("inf.0.00.00", None),
        ("1.2.0g.00", None),
        (b"1.2.00.00", None),
    ],
)
def test_a_stamp_is_read_back_only_in_its_own_form(value: object, expected: tuple[float, bytes, bytes] | None) -> None:
    stamp = read_stamp(value)
    assert (None if stamp is None else (stamp.moment, stamp.kid, stamp.mac)) == expected
