"""Who may call the endpoint: the caller policy, real OIDC tokens verified offline, and the executor refusing with 403.

Tokens are real RS256 JWTs signed by a locally generated RSA key; the
certificates are served by a real HTTP server on 127.0.0.1
(:mod:`im_task_testsupport.oidc`), which counts the fetches.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from im_task_testsupport import sink
from im_task_testsupport.oidc import (
    AUDIENCE,
    SERVICE_ACCOUNT,
    CertificateServer,
    SigningKey,
    certificates_in_force,
    claims,
    serve_certificates,
)
from im_task_testsupport.raw_http import Body
from im_task_testsupport.threads import run_in_threads

import im_task.caller
import im_task.oidc
from im_task import configure
from im_task.caller import CallerError, CallerPolicy, OidcConfig, bearer_token
from im_task.config import get_keyring, get_settings
from im_task.envelope import seal
from im_task.errors import ConfigurationError
from im_task.executor import TaskResponse, handle_request
from im_task.headers import APPENGINE, CLOUDTASKS, make_task_headers
from im_task.oidc import (
    CLOCK_SKEW,
    GOOGLE_CERTS_URL,
    certificates_url,
    freshness,
    get_certificates,
    set_certificates_url,
    verify_oidc_token,
)
from im_task.runtime import check_configuration
from im_task.serialization import TaskCall, dumps_call
from im_task.state import STATE

PATH = "/_ah/task/app/work"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    """The key whose certificate the server serves."""
    return SigningKey("key-1")


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    """A key the server does not serve."""
    return SigningKey("key-2")


@pytest.fixture
def certs(key: SigningKey) -> Iterator[CertificateServer]:
    """Google's certificate endpoint, played on 127.0.0.1, and this process pointed at it."""
    with certificates_in_force(key) as server:
        yield server


def verify(token: str, **kwargs: Any) -> Any:
    return verify_oidc_token(token, audience=AUDIENCE, service_account_email=SERVICE_ACCOUNT, **kwargs)


# The policy, row by row.

PRODUCTION_OFF_GAE = CallerPolicy(production=True, on_app_engine=False)
PRODUCTION_ON_GAE = CallerPolicy(production=True, on_app_engine=True)
DEVELOPMENT = CallerPolicy(production=False, on_app_engine=False)
OIDC = OidcConfig(SERVICE_ACCOUNT, AUDIENCE)

ACCEPT, TOKEN, REFUSE = "accept", "token", "refuse"


@pytest.mark.parametrize(
    ("where", "family", "oidc", "front", "expected"),
    [
        (PRODUCTION_ON_GAE, APPENGINE, None, False, ACCEPT),
        (PRODUCTION_ON_GAE, APPENGINE, OIDC, False, ACCEPT),
        (PRODUCTION_ON_GAE, CLOUDTASKS, None, False, REFUSE),
        (PRODUCTION_ON_GAE, CLOUDTASKS, OIDC, False, TOKEN),
        (PRODUCTION_ON_GAE, CLOUDTASKS, None, True, ACCEPT),
        (PRODUCTION_OFF_GAE, APPENGINE, None, False, REFUSE),
        (PRODUCTION_OFF_GAE, APPENGINE, OIDC, False, REFUSE),
        (PRODUCTION_OFF_GAE, APPENGINE, None, True, REFUSE),
        (PRODUCTION_OFF_GAE, CLOUDTASKS, None, False, REFUSE),
        (PRODUCTION_OFF_GAE, CLOUDTASKS, OIDC, False, TOKEN),
        (PRODUCTION_OFF_GAE, CLOUDTASKS, OIDC, True, TOKEN),
        (PRODUCTION_OFF_GAE, CLOUDTASKS, None, True, ACCEPT),
        (DEVELOPMENT, APPENGINE, None, False, ACCEPT),
        (DEVELOPMENT, APPENGINE, OIDC, False, ACCEPT),
        (DEVELOPMENT, CLOUDTASKS, None, False, ACCEPT),
        (DEVELOPMENT, CLOUDTASKS, OIDC, False, TOKEN),
    ],
)
def test_the_policy_table(
    where: CallerPolicy, family: str, oidc: OidcConfig | None, front: bool, expected: str
) -> None:
    decision = dataclasses.replace(where, oidc=oidc, front_authenticated=front).decide(family)
    got = (TOKEN if decision.token_required else ACCEPT) if decision.accepted else REFUSE
    assert got == expected
    assert bool(decision.reason) == (expected == REFUSE)


def test_refusals_say_why() -> None:
    off = PRODUCTION_OFF_GAE
    assert "outside App Engine, where nothing strips them" in off.decide(APPENGINE).reason
    assert "no OIDC check is configured" in off.decide(CLOUDTASKS).reason
    assert "on App Engine, which does not strip them" in PRODUCTION_ON_GAE.decide(CLOUDTASKS).reason
    assert DEVELOPMENT.decide("X-Other-").reason == "unknown task header family 'X-Other-'"


def test_the_policy_reads_the_settings_and_gae_env(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(environment="production", service_account_email=SERVICE_ACCOUNT, base_url="https://app.example.com/")
    policy = CallerPolicy.from_settings(get_settings())
    assert policy == CallerPolicy(
        production=True,
        on_app_engine=False,
        oidc=OidcConfig(SERVICE_ACCOUNT, "https://app.example.com"),  # the audience defaults to base_url
        http_targets=True,
    )
    configure(audience=AUDIENCE, front_authenticated=True)
    monkeypatch.setenv("GAE_ENV", "flex")
    policy = CallerPolicy.from_settings(get_settings())
    assert policy.on_app_engine
    assert policy.front_authenticated
    assert policy.oidc == OIDC  # an explicit audience wins over base_url


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"audience": AUDIENCE}, r"audience is set but service_account_email is not.*IM_TASK_SERVICE_ACCOUNT_EMAIL"),
        ({"service_account_email": SERVICE_ACCOUNT}, r"no audience to check.*IM_TASK_AUDIENCE.*IM_TASK_BASE_URL"),
    ],
)
@pytest.mark.parametrize("environment", ["development", "production"])
def test_an_incomplete_oidc_configuration_is_refused_everywhere(
    settings: dict[str, str], message: str, environment: str
) -> None:
    configure(environment=environment, **settings)
    with pytest.raises(ConfigurationError, match=message):
        check_configuration()


# Start-up.


def test_production_outside_app_engine_without_oidc_refuses_to_start_saying_what_to_set() -> None:
    configure(environment="production", transport="recording")
    with pytest.raises(ConfigurationError) as refused:
        check_configuration()
    message = str(refused.value)
    assert "production outside App Engine" in message
    for what in (
        "IM_TASK_SERVICE_ACCOUNT_EMAIL",
        "IM_TASK_AUDIENCE",
        "IM_TASK_BASE_URL",
        "IM_TASK_FRONT_AUTHENTICATED",
    ):
        assert what in message
    configure(service_account_email=SERVICE_ACCOUNT, audience=AUDIENCE)
    check_configuration()


def test_app_engine_production_starts_without_oidc_unless_tasks_are_http_targets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GAE_ENV", "standard")
    configure(environment=None, transport="recording")
    check_configuration()  # App Engine targets: the headers App Engine strips prove the caller
    configure(base_url="https://app.example.com")
    with pytest.raises(ConfigurationError, match=r"with base_url set, so tasks are Cloud Tasks HTTP-target tasks"):
        check_configuration()


def test_front_authenticated_starts_with_a_warning_that_says_the_risk(caplog: pytest.LogCaptureFixture) -> None:
    configure(environment="production", transport="recording", front_authenticated=True)
    with caplog.at_level(logging.WARNING, logger="im_task"):
        check_configuration()
    warnings = [r.getMessage() for r in caplog.records if "front_authenticated" in r.getMessage()]
    assert len(warnings) == 1
    assert "without an OIDC check" in warnings[0]
    assert "safe only if every request that reaches the application was authenticated" in warnings[0]


def test_development_starts_without_anything_and_warns_of_nothing(caplog: pytest.LogCaptureFixture) -> None:
    configure(transport="recording", front_authenticated=True)
    with caplog.at_level(logging.WARNING, logger="im_task"):
        check_configuration()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_oidc_configuration_without_google_auth_is_refused_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "google.auth", None)  # what Python does for a package that is not installed
    configure(service_account_email=SERVICE_ACCOUNT, audience=AUDIENCE, transport="recording")
    with pytest.raises(ConfigurationError, match=r"needs google-auth: pip install 'im-task\[gcp\]'"):
        check_configuration()


# Tokens.


def test_a_good_token_verifies(certs: CertificateServer, key: SigningKey) -> None:
    token = key.token(claims())
    verified = verify(token)
    assert verified["email"] == SERVICE_ACCOUNT
    assert verified["aud"] == AUDIENCE


def test_both_google_issuers_are_accepted(certs: CertificateServer, key: SigningKey) -> None:
    for issuer in ("accounts.google.com", "https://accounts.google.com"):
        assert verify(key.token(claims(iss=issuer)))["iss"] == issuer


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"audience": "https://other.example.com"}, "audience"),
        ({"audience": AUDIENCE + "/"}, "audience"),
        ({"iss": "https://evil.example.com"}, "issuer is 'https://evil.example.com'"),
        ({"iss": None}, "issuer is None"),
        ({"email": "someone@other-project.iam.gserviceaccount.com"}, "email is 'someone@other-project"),
        ({"email": SERVICE_ACCOUNT.upper()}, "email is"),
        ({"email_verified": False}, "email is not verified"),
        ({"email_verified": "true"}, "email is not verified"),
        ({"email_verified": None}, "email is not verified"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
        ({"exp": int(time.time()) - CLOCK_SKEW - 30}, "expired"),
        ({"iat": int(time.time()) + 3600}, "too early"),
        ({"exp": None}, "exp"),
    ],
    ids=[
        "wrong-audience",
        "audience-with-slash",
        "wrong-issuer",
        "no-issuer",
        "wrong-email",
        "email-in-other-case",
        "email-not-verified",
        "email-verified-as-string",
        "no-email-verified",
        "expired",
        "expired-past-the-skew",
        "issued-in-the-future",
        "no-expiry",
    ],
)
def test_bad_claims_are_refused(certs: CertificateServer, key: SigningKey, overrides: dict[str, Any], why: str) -> None:
    token = key.token(claims(**overrides))
    with pytest.raises(CallerError, match=why) as refused:
        verify(token)
    assert token not in str(refused.value)


def test_a_small_clock_skew_is_allowed(certs: CertificateServer, key: SigningKey) -> None:
    verify(key.token(claims(exp=int(time.time()) - CLOCK_SKEW // 2)))


def test_the_documented_skew_and_refetch_interval() -> None:
    """docs/security.md: 10 seconds of clock difference; an early fetch at most once a minute."""
    assert (CLOCK_SKEW, im_task.oidc.UNKNOWN_KEY_REFETCH_INTERVAL) == (10, 60.0)


def test_a_bad_signature_is_refused(certs: CertificateServer, key: SigningKey, other_key: SigningKey) -> None:
    forged = other_key.token(claims(), kid=key.kid)  # the right key id, the wrong key
    with pytest.raises(CallerError, match="signature"):
        verify(forged)
    header, _, signature = key.token(claims()).split(".")
    tampered = key.token(claims(email="attacker@example.com")).split(".")[1]
    with pytest.raises(CallerError, match="signature"):
        verify(f"{header}.{tampered}.{signature}")


def test_an_unknown_key_id_is_refused(certs: CertificateServer, other_key: SigningKey) -> None:
    with pytest.raises(CallerError, match=r"key id 'key-2', which is not among Google's certificates"):
        verify(other_key.token(claims()))


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("not-a-jwt", "not a signed JWT"),
        ("a.b", "not a signed JWT"),
        ("e30.e30.", "not a signed JWT"),
        ("!!!!.e30.c2ln", "not base64url-encoded JSON"),
    ],
)
def test_malformed_tokens_are_refused(certs: CertificateServer, token: str, why: str) -> None:
    with pytest.raises(CallerError, match=why):
        verify(token)


def test_only_rs256_with_a_key_id_is_accepted(certs: CertificateServer, key: SigningKey) -> None:
    with pytest.raises(CallerError, match="signed with 'none'"):
        verify(key.token(claims(), header={"alg": "none"}))
    header_without_kid = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"  # {"alg":"RS256","typ":"JWT"}
    _, payload, signature = key.token(claims()).split(".")
    with pytest.raises(CallerError, match="names no key id"):
        verify(f"{header_without_kid}.{payload}.{signature}")


def test_the_audience_and_email_must_be_given() -> None:
    with pytest.raises(ConfigurationError, match="non-empty audience"):
        verify_oidc_token("x.y.z", audience="", service_account_email=SERVICE_ACCOUNT)


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({"Authorization": "Bearer abc.def.ghi"}, "abc.def.ghi"),
        ({"authorization": "bearer  abc.def.ghi "}, "abc.def.ghi"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"Authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_bearer_token(headers: dict[str, str], token: str | None) -> None:
    assert bearer_token(headers) == token


# Google's certificates: cached for their max-age, thread-safe, refetched when they expire.


def test_the_certificates_url_is_googles_unless_set() -> None:
    assert certificates_url() == GOOGLE_CERTS_URL == "https://www.googleapis.com/oauth2/v1/certs"
    set_certificates_url("http://127.0.0.1:9/certs")
    assert certificates_url() == "http://127.0.0.1:9/certs"
    set_certificates_url(None)
    assert certificates_url() == GOOGLE_CERTS_URL
    with pytest.raises(ConfigurationError, match="absolute http"):
        set_certificates_url("file:///etc/passwd")


def test_two_verifications_fetch_once_within_max_age(certs: CertificateServer, key: SigningKey) -> None:
    verify(key.token(claims()))
    verify(key.token(claims()))
    assert certs.fetches == 1


def test_certificates_are_fetched_again_after_max_age(certs: CertificateServer, key: SigningKey) -> None:
    certs.cache_control = "public, max-age=1, must-revalidate, no-transform"
    verify(key.token(claims()))
    verify(key.token(claims()))
    assert certs.fetches == 1
    time.sleep(1.1)
    verify(key.token(claims()))
    assert certs.fetches == 2


def test_age_counts_against_max_age(certs: CertificateServer, key: SigningKey) -> None:
    certs.age = "3600"  # as old as its max-age: stale on arrival
    verify(key.token(claims()))
    verify(key.token(claims()))
    assert certs.fetches == 2


@pytest.mark.parametrize(
    ("cache_control", "age", "seconds"),
    [
        ("public, max-age=19204, must-revalidate, no-transform", None, 19204),
        ("public, max-age=19204", "4", 19200),
        ("max-age=10", "60", 0),
        ('MAX-AGE="30"', None, 30),
        ("no-store", None, 0),
        ("no-cache, max-age=60", None, 0),
        (None, None, im_task.oidc.DEFAULT_MAX_AGE),
        ("max-age=soon", None, im_task.oidc.DEFAULT_MAX_AGE),
        ("max-age=60", "later", 60),
    ],
)
def test_freshness(cache_control: str | None, age: str | None, seconds: float) -> None:
    assert freshness(cache_control, age) == seconds


def test_the_cache_is_one_process_wide_state_kept_in_state(certs: CertificateServer) -> None:
    fetched = get_certificates()
    assert STATE.oidc_certs is fetched
    assert dict(fetched.pems) == {"key-1": certs.keys[0].cert_pem}
    saved = STATE.snapshot()
    STATE.oidc_certs = None
    STATE.restore(saved)
    assert get_certificates() is fetched
    assert certs.fetches == 1


def test_concurrent_verifications_on_a_cold_cache_fetch_once(certs: CertificateServer, key: SigningKey) -> None:
    certs.delay = 0.3  # every thread arrives while the first fetch is in flight
    token = key.token(claims())
    assert run_in_threads(lambda: verify(token), timeout=30) == []
    assert certs.fetches == 1


def test_an_unknown_key_id_refetches_at_most_once_a_while(
    certs: CertificateServer, key: SigningKey, other_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    verify(key.token(claims()))
    with pytest.raises(CallerError, match="key id 'key-2'"):
        verify(other_key.token(claims()))
    assert certs.fetches == 1  # just fetched: made-up key ids do not make a fetch each
    monkeypatch.setattr(im_task.oidc, "UNKNOWN_KEY_REFETCH_INTERVAL", 0.2)
    certs.keys.append(other_key)  # Google publishes a new key
    time.sleep(0.25)
    verify(other_key.token(claims()))
    assert certs.fetches == 2
    verify(key.token(claims()))
    assert certs.fetches == 2


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (503, None, "could not fetch Google's certificates from .*: HTTP 503"),
        (200, b"<html>not json</html>", "not a JSON object of PEM certificates"),
        (200, b"{}", "not a JSON object of PEM certificates"),
        (200, b'{"key-1": 42}', "not a JSON object of PEM certificates"),
    ],
)
def test_a_failed_fetch_refuses_and_is_not_cached(
    certs: CertificateServer, key: SigningKey, status: int, body: bytes | None, why: str
) -> None:
    certs.status, certs.body = status, body
    with pytest.raises(CallerError, match=why):
        verify(key.token(claims()))
    certs.status, certs.body = 200, None
    verify(key.token(claims()))
    assert certs.fetches == 2


def test_an_unreachable_certificate_server_refuses(key: SigningKey) -> None:
    with serve_certificates(key) as server:
        url = server.url
    set_certificates_url(url)  # stopped: nothing listens there any more
    with pytest.raises(CallerError, match="could not fetch Google's certificates"):
        verify(key.token(claims()))


# The executor: a failed caller check is 403, before the body is read, and nothing is unpickled.


def tripwire_body() -> Body:
    call = TaskCall(sink.record, (sink.Tripwire(),), description="tests/tripwire")
    return Body(seal(dumps_call(call), get_keyring()))


def deliver(family: str, token: str | None = None, body: Body | None = None) -> tuple[TaskResponse, Body]:
    headers = make_task_headers(queue_name="default", task_name="task-1", family=family)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = body or tripwire_body()
    return handle_request("POST", PATH, body, headers, "10.0.0.1"), body


def production_with_oidc() -> None:
    configure(environment="production", service_account_email=SERVICE_ACCOUNT, audience=AUDIENCE)


def assert_refused_unread(response: TaskResponse, body: Body) -> None:
    assert response.status == 403
    assert response.body == b"Forbidden: the caller is not the task queue.\n"
    assert not body.was_read
    assert sink.events() == []


def test_a_good_token_runs_the_task(certs: CertificateServer, key: SigningKey) -> None:
    production_with_oidc()
    response, body = deliver(CLOUDTASKS, key.token(claims()))
    assert response.status == 200
    assert body.was_read
    assert sink.events() == ["unpickled", None]


@pytest.mark.parametrize(
    "make_token",
    [
        lambda key, other: None,
        lambda key, other: "",
        lambda key, other: key.token(claims(audience="https://other.example.com")),
        lambda key, other: key.token(claims(iss="https://evil.example.com")),
        lambda key, other: key.token(claims(email="someone@example.com")),
        lambda key, other: key.token(claims(email_verified=False)),
        lambda key, other: key.token(claims(exp=int(time.time()) - 600, iat=int(time.time()) - 4200)),
        lambda key, other: other.token(claims(), kid=key.kid),
        lambda key, other: other.token(claims()),
        lambda key, other: "garbage",
    ],
    ids=[
        "no-token",
        "empty-token",
        "wrong-audience",
        "wrong-issuer",
        "wrong-email",
        "unverified-email",
        "expired",
        "bad-signature",
        "unknown-key-id",
        "garbage",
    ],
)
def test_a_failed_token_check_is_403_before_the_body_is_read(
    certs: CertificateServer,
    key: SigningKey,
    other_key: SigningKey,
    make_token: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    production_with_oidc()
    token = make_token(key, other_key)
    with caplog.at_level(logging.WARNING, logger="im_task"):
        response, body = deliver(CLOUDTASKS, token)
    assert_refused_unread(response, body)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(logged) == 1
    assert logged[0].startswith("Refused task 'task-1' ('/_ah/task/app/work') from '10.0.0.1': ")
    if token and len(token) > 10:
        assert all(part not in logged[0] for part in token.split(".") if len(part) > 8)  # never the token


def test_a_failed_certificate_fetch_is_403_and_logged(
    certs: CertificateServer, key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    production_with_oidc()
    certs.status = 500
    with caplog.at_level(logging.WARNING, logger="im_task"):
        response, body = deliver(CLOUDTASKS, key.token(claims()))
    assert_refused_unread(response, body)
    assert "could not fetch Google's certificates" in caplog.text


def test_production_outside_app_engine_refuses_appengine_headers_even_with_oidc(
    certs: CertificateServer, key: SigningKey
) -> None:
    production_with_oidc()
    response, body = deliver(APPENGINE, key.token(claims()))
    assert_refused_unread(response, body)


def test_app_engine_production_accepts_appengine_headers_and_refuses_cloudtasks_ones(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GAE_ENV", "standard")
    configure(environment=None)
    assert get_settings().production
    with caplog.at_level(logging.WARNING, logger="im_task"):
        response, body = deliver(CLOUDTASKS)
    assert_refused_unread(response, body)
    assert "on App Engine, which does not strip them" in caplog.text
    response, body = deliver(APPENGINE)
    assert response.status == 200
    assert sink.events() == ["unpickled", None]


def test_app_engine_production_with_oidc_checks_the_tokens_of_http_target_tasks(
    certs: CertificateServer, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAE_ENV", "standard")
    configure(service_account_email=SERVICE_ACCOUNT, audience=AUDIENCE)
    assert_refused_unread(*deliver(CLOUDTASKS))
    assert deliver(CLOUDTASKS, key.token(claims()))[0].status == 200


def test_production_without_oidc_refuses_http_target_tasks_even_if_start_up_was_not_checked() -> None:
    configure(environment="production")
    assert_refused_unread(*deliver(CLOUDTASKS))
    assert_refused_unread(*deliver(APPENGINE))


def test_front_authenticated_accepts_http_target_tasks_without_a_token() -> None:
    configure(environment="production", front_authenticated=True)
    response, _ = deliver(CLOUDTASKS)
    assert response.status == 200
    sink.reset()
    assert_refused_unread(*deliver(APPENGINE))  # outside App Engine, still nothing strips these


def test_development_with_oidc_checks_tokens_of_http_target_tasks_only(
    certs: CertificateServer, key: SigningKey
) -> None:
    configure(service_account_email=SERVICE_ACCOUNT, audience=AUDIENCE)
    assert not get_settings().production
    assert_refused_unread(*deliver(CLOUDTASKS))
    assert_refused_unread(*deliver(CLOUDTASKS, key.token(claims(audience="https://other.example.com"))))
    assert deliver(CLOUDTASKS, key.token(claims()))[0].status == 200
    sink.reset()
    assert deliver(APPENGINE)[0].status == 200  # the local queue's deliveries


def test_development_without_oidc_keeps_headers_and_signature() -> None:
    assert deliver(CLOUDTASKS)[0].status == 200
    assert deliver(APPENGINE)[0].status == 200


def test_an_incomplete_oidc_configuration_at_request_time_is_500_and_nothing_is_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure(service_account_email=SERVICE_ACCOUNT)  # no audience, no base_url
    with caplog.at_level(logging.ERROR, logger="im_task"):
        response, body = deliver(CLOUDTASKS)
    assert response.status == 500
    assert not body.was_read
    assert sink.events() == []
    assert "no audience to check the tokens against" in caplog.text


def test_a_valid_token_proves_the_caller_so_its_retry_count_is_trusted(
    certs: CertificateServer, key: SigningKey
) -> None:
    configure(service_account_email=SERVICE_ACCOUNT, audience=AUDIENCE)  # development: the token is still checked
    headers = {**make_task_headers(queue_name="default", task_name="t-1", family=CLOUDTASKS)}
    headers["Authorization"] = f"Bearer {key.token(claims())}"
    assert im_task.caller.check_caller(CLOUDTASKS, headers, get_settings()) is True
    configure(service_account_email=None, audience=None)
    assert im_task.caller.check_caller(CLOUDTASKS, headers, get_settings()) is False  # accepted, unproven
