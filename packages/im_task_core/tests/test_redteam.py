"""Red-team tests: forged, replayed and malformed requests against every endpoint of the core.

Each test is an attack, made over real HTTP (``serve_wsgi(TaskWSGIApp())`` on
127.0.0.1) or through the endpoint handlers directly. The bodies carry a
:class:`~im_task_testsupport.sink.Tripwire`, which records ``"unpickled"``
if anything deserialises them.
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport import sink
from im_task_testsupport.oidc import (
    AUDIENCE,
    SERVICE_ACCOUNT,
    SigningKey,
    certificates_in_force,
    claims,
)
from im_task_testsupport.raw_http import Body, Client

from im_task import configure, deferred
from im_task.adapter_settings import read_adapter_settings
from im_task.config import get_keyring
from im_task.endpoints import DEFERRED_URL, SWEEP_PATH
from im_task.endpoints import handle_request as dispatch
from im_task.envelope import PayloadReference, seal, seal_reference
from im_task.errors import ConfigurationError, PermanentTaskFailure
from im_task.headers import APPENGINE, CLOUDTASKS, make_task_headers
from im_task.runtime import check_configuration
from im_task.serialization import TaskCall, dumps_call
from im_task.stores.base import get_payload_store, store_payload
from im_task.testing import serve_wsgi
from im_task.wsgi import TaskWSGIApp

from .conftest import TEST_SECRET

TASK_PATH = "/_ah/task/app/work"
QUEUE_PATH = "/_ah/queue/default"
ENDPOINT_PATHS = (TASK_PATH, DEFERRED_URL, QUEUE_PATH)


def forged_pickle() -> bytes:
    """An unsigned pickle, as an attacker would send (protocol 2: the legacy deferred format)."""
    return pickle.dumps((sink.record, (sink.Tripwire(),), {}), protocol=2)


def signed_tripwire() -> bytes:
    """A genuine, signed task whose arguments record "unpickled" when deserialised."""
    return seal(dumps_call(TaskCall(sink.record, (sink.Tripwire(),), description="tests/tripwire")), get_keyring())


def post(url: str, path: str, body: bytes, headers: list[tuple[str, str]], method: str = "POST") -> tuple[int, bytes]:
    """One raw HTTP request (repeated headers are sent as given)."""
    reply = Client(url).request(method, path, body, headers)
    return reply.status, reply.body


@pytest.fixture
def server() -> Iterator[str]:
    with serve_wsgi(TaskWSGIApp()) as url:
        yield url


def task_headers(family: str = APPENGINE) -> list[tuple[str, str]]:
    return list(make_task_headers(queue_name="default", task_name="task-1", family=family).items())


# Nothing unsigned reaches pickle.loads.


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize("path", ENDPOINT_PATHS)
def test_a_forged_pickle_is_refused_on_every_endpoint_over_http(server: str, path: str, environment: str) -> None:
    configure(environment=environment, front_authenticated=True)
    for family in (APPENGINE, CLOUDTASKS):
        status, _ = post(server, path, forged_pickle(), task_headers(family))
        assert status == 403
    assert sink.events() == []


@pytest.mark.parametrize("path", ENDPOINT_PATHS)
def test_header_case_and_underscore_tricks_reach_nothing(server: str, path: str) -> None:
    tricks = [
        [("x-appengine-queuename", "q"), ("X-APPENGINE-TASKNAME", "t")],
        [("X_AppEngine_QueueName", "q"), ("X_AppEngine_TaskName", "t")],
        [("X-CloudTasks-QueueName", "q"), ("X_CloudTasks_TaskName", "t")],
        [*task_headers(APPENGINE), *task_headers(CLOUDTASKS)],
    ]
    for headers in tricks:
        status, _ = post(server, path, forged_pickle(), headers)
        assert status == 403
    assert sink.events() == []


def test_legacy_payloads_need_production_on_app_engine_the_appengine_family_and_the_task_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(accept_legacy_payloads=True)
    with pytest.raises(ConfigurationError, match="accept_legacy_payloads"):
        check_configuration()
    configure(environment="production", accept_legacy_payloads=True)
    monkeypatch.setenv("GAE_ENV", "standard")
    appengine = dict(task_headers(APPENGINE))
    cloudtasks = dict(task_headers(CLOUDTASKS))
    for path, headers, address in [
        (TASK_PATH, appengine, "0.1.0.2"),  # never on the task endpoint
        (DEFERRED_URL, appengine, "10.0.0.1"),
        (DEFERRED_URL, appengine, None),
        (DEFERRED_URL, {**cloudtasks, "Authorization": "Bearer x"}, "0.1.0.2"),
    ]:
        assert dispatch("POST", path, forged_pickle(), headers, address).status == 403
    assert sink.events() == []


def test_deferred_run_refuses_unsigned_bytes_without_the_legacy_opt_in() -> None:
    with pytest.raises(PermanentTaskFailure):
        deferred.run(forged_pickle())
    assert sink.events() == []


def test_a_reference_to_an_altered_stored_payload_is_never_unpickled() -> None:
    genuine = dumps_call(TaskCall(sink.record, ("genuine",), description="tests/genuine"))
    reference = store_payload(genuine)
    store: Any = get_payload_store()
    evil = forged_pickle()
    store.delete(reference.key)
    store._run("INSERT INTO payloads (key, data, created) VALUES (?, ?, ?)", (reference.key, evil, time.time()))
    headers = dict(task_headers())
    response = dispatch("POST", TASK_PATH, seal_reference(reference, get_keyring()), headers, "10.0.0.1")
    assert response.status == 200  # dropped, not retried
    forged_reference = PayloadReference.of("local", reference.key, evil)
    forged_envelope = b"\x02" + forged_reference.to_bytes()
    assert dispatch("POST", TASK_PATH, forged_envelope, headers, "10.0.0.1").status == 403
    assert sink.events() == []
    with pytest.raises(ConfigurationError):
        deferred.run_from_datastore(reference.key)  # type: ignore[arg-type]


# The body cap.


@pytest.mark.parametrize("path", ENDPOINT_PATHS)
def test_a_declared_oversized_body_is_413_unread_on_every_endpoint(path: str) -> None:
    configure(max_body_size=1024)
    body = Body(b"x" * 10)
    headers = {**dict(task_headers()), "Content-Length": str(10**9)}
    assert dispatch("POST", path, body, headers, "10.0.0.1").status == 413
    assert not body.was_read
    undeclared = Body(b"x" * 4096)
    assert dispatch("POST", path, undeclared, dict(task_headers()), "10.0.0.1").status == 413
    assert undeclared.tell() <= 1025


# The sweep route.


def test_the_sweep_route_refuses_the_cron_header_in_production_outside_app_engine(server: str) -> None:
    """Outside App Engine nothing strips ``X-Appengine-Cron``: anyone could make the app sweep its outbox."""
    configure(environment="production")
    status, _ = post(server, SWEEP_PATH, b"", [("X-Appengine-Cron", "true")], method="GET")
    assert status == 403


def test_the_sweep_route_takes_app_engine_cron_on_app_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(environment="production")
    monkeypatch.setenv("GAE_ENV", "standard")
    assert dispatch("GET", SWEEP_PATH, b"", {}, "10.0.0.1").status == 403
    # past the caller check: 500 only because no outbox is installed here
    assert dispatch("GET", SWEEP_PATH, b"", {"X-Appengine-Cron": "true"}, "10.0.0.1").status == 500


# OIDC, with tokens signed offline.


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("key-1")


@pytest.fixture
def oidc(key: SigningKey) -> Iterator[None]:
    with certificates_in_force(key):
        configure(environment="production", service_account_email=SERVICE_ACCOUNT, audience=AUDIENCE)
        yield


def _segment(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_forged_and_stolen_looking_tokens_are_refused_over_http(oidc: None, key: SigningKey, server: str) -> None:
    now = int(time.time())
    good = key.token(claims())
    attacks = {
        "missing": [],
        "alg none": [("Authorization", f"Bearer {_segment({'alg': 'none', 'kid': 'key-1'})}.{_segment(claims())}.")],
        "HS256": [("Authorization", "Bearer " + key.token(claims(), header={"alg": "HS256"}))],
        "audience list": [("Authorization", "Bearer " + key.token(claims(aud=[AUDIENCE, "https://evil.example"])))],
        "expired": [("Authorization", "Bearer " + key.token(claims(iat=now - 7200, exp=now - 3600)))],
        "email_verified as text": [("Authorization", "Bearer " + key.token(claims(email_verified="true")))],
        "two headers": [("Authorization", "Bearer junk.junk.junk"), ("Authorization", "Bearer " + good)],
        "basic scheme": [("Authorization", "Basic " + good)],
    }
    for name, extra in attacks.items():
        status, _ = post(server, TASK_PATH, signed_tripwire(), task_headers(CLOUDTASKS) + extra)
        assert status == 403, name
    assert sink.events() == []
    genuine = [*task_headers(CLOUDTASKS), ("Authorization", "Bearer " + good)]
    status, _ = post(server, TASK_PATH, signed_tripwire(), genuine)
    assert status == 200
    assert sink.events()[:1] == ["unpickled"]  # the genuine task ran


def test_a_deeply_nested_token_is_a_403_not_an_unhandled_error(oidc: None) -> None:
    nested = base64.urlsafe_b64encode(b"[" * 1500).rstrip(b"=").decode()
    headers = {**dict(task_headers(CLOUDTASKS)), "Authorization": f"Bearer {nested}.{nested}.c2lnbmF0dXJl"}
    body = Body(signed_tripwire())
    assert dispatch("POST", TASK_PATH, body, headers, "10.0.0.1").status == 403
    assert not body.was_read


def test_refused_tokens_never_reach_the_log(oidc: None, key: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="im_task")
    tokens = [
        key.token(claims(aud="https://elsewhere.example.com")),
        key.token(claims(), kid="not-a-google-key"),
        key.token(claims())[:-20] + "A" * 20,
        key.token(claims()).rsplit(".", 1)[0] + ".!!!!not-base64!!!!",
    ]
    for token in tokens:
        headers = {**dict(task_headers(CLOUDTASKS)), "Authorization": f"Bearer {token}"}
        assert dispatch("POST", TASK_PATH, signed_tripwire(), headers, "10.0.0.1").status == 403
        for segment in token.split("."):
            if len(segment) >= 8:
                assert segment not in caplog.text


# Secrets in logs and reprs; unsafe configuration at start-up.


def test_the_secret_is_in_no_repr_of_the_settings_an_adapter_read() -> None:
    read = read_adapter_settings({"secret": TEST_SECRET}, source="settings.IM_TASK")
    assert TEST_SECRET not in repr(read)
    assert read.core["secret"] == TEST_SECRET


def test_development_on_google_cloud_is_not_silent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("K_SERVICE", "my-service")
    configure(environment="development", transport="recording")
    caplog.set_level(logging.WARNING, logger="im_task")
    check_configuration()  # allowed (a private test deployment), but never silently
    assert "runs on Google Cloud with environment='development': the production checks are off" in caplog.text
