"""Who may call the endpoint, through every adapter over real HTTP: production with an OIDC check.

Each adapter's application is configured through its framework's own
settings for production with an OIDC configuration; Google's certificates
are served from 127.0.0.1 and the tokens are signed by a local RSA key
(:mod:`im_task_testsupport.oidc`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from conformance_support import CAP, Served, enqueue
from im_task_testsupport import sink
from im_task_testsupport.oidc import (
    AUDIENCE,
    SERVICE_ACCOUNT,
    CertificateServer,
    SigningKey,
    certificates_in_force,
    claims,
)

from im_task import task
from im_task.errors import ConfigurationError
from im_task.headers import APPENGINE, CLOUDTASKS
from im_task.routing import DEFAULT_TASKROUTE
from im_task.runtime import check_configuration
from im_task.testing import serve_wsgi

PRODUCTION_WITH_OIDC = {
    "max_body_size": CAP,
    "environment": "production",
    "service_account_email": SERVICE_ACCOUNT,
    "audience": AUDIENCE,
}


@task
def ran(value: object) -> None:
    sink.record("ran", value)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("conformance-key")


@pytest.fixture
def certs(key: SigningKey) -> Iterator[CertificateServer]:
    with certificates_in_force(key) as server:
        yield server


def start_up(adapter: Any) -> None:
    """What the adapter does when its application starts, beyond building it (Flask and webapp2 check while built)."""
    if adapter.name == "django":
        from im_task_django.conf import apply_settings_at_startup

        apply_settings_at_startup()
    elif adapter.name == "wsgi":
        check_configuration()  # what the plain WSGI app's docs tell an application to call


@pytest.fixture
def production_app(adapter: Any, certs: CertificateServer) -> Iterator[Served]:
    """The adapter's application in production with an OIDC configuration, served on 127.0.0.1."""
    with ExitStack() as stack:
        app = stack.enter_context(adapter.build(DEFAULT_TASKROUTE, PRODUCTION_WITH_OIDC))
        start_up(adapter)
        base_url = stack.enter_context(serve_wsgi(app))
        yield Served(adapter.name, base_url, DEFAULT_TASKROUTE)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_http_target_task_without_a_token_is_refused_and_nothing_is_unpickled(production_app: Served) -> None:
    reply = production_app.deliver(enqueue(ran, sink.Tripwire()), family=CLOUDTASKS)
    assert reply.status == 403
    assert sink.events() == []


@pytest.mark.parametrize(
    "overrides",
    [{"audience": "https://elsewhere.example.com"}, {"email": "someone@example.com"}, {"email_verified": False}],
    ids=["wrong-audience", "wrong-email", "unverified-email"],
)
def test_an_http_target_task_with_a_bad_token_is_refused(
    production_app: Served, key: SigningKey, overrides: dict[str, Any]
) -> None:
    token = key.token(claims(**overrides))
    reply = production_app.deliver(enqueue(ran, sink.Tripwire()), family=CLOUDTASKS, extra_headers=bearer(token))
    assert reply.status == 403
    assert sink.events() == []


def test_an_http_target_task_with_a_good_token_runs(
    production_app: Served, key: SigningKey, certs: CertificateServer
) -> None:
    request = enqueue(ran, 1)
    for _ in range(2):
        reply = production_app.deliver(request, family=CLOUDTASKS, extra_headers=bearer(key.token(claims())))
        assert reply.status == 200
    assert sink.events() == [("ran", 1), ("ran", 1)]
    assert certs.fetches == 1


def test_app_engine_headers_outside_app_engine_are_refused_even_with_a_good_token(
    production_app: Served, key: SigningKey
) -> None:
    reply = production_app.deliver(
        enqueue(ran, sink.Tripwire()), family=APPENGINE, extra_headers=bearer(key.token(claims()))
    )
    assert reply.status == 403
    assert sink.events() == []


def test_production_without_an_oidc_configuration_refuses_to_start(adapter: Any) -> None:
    settings = {"max_body_size": CAP, "environment": "production"}
    with pytest.raises(Exception) as refused, adapter.build(DEFAULT_TASKROUTE, settings):  # checked below
        start_up(adapter)
    if adapter.name == "django":
        from django.core.exceptions import ImproperlyConfigured

        assert isinstance(refused.value, ImproperlyConfigured)
        assert "IM_TASK['SERVICE_ACCOUNT_EMAIL']" in str(refused.value)
    else:
        assert isinstance(refused.value, ConfigurationError)
    assert "IM_TASK_SERVICE_ACCOUNT_EMAIL" in str(refused.value)
    assert "IM_TASK_FRONT_AUTHENTICATED" in str(refused.value)


def test_django_reports_it_as_a_system_check() -> None:
    pytest.importorskip("django")
    import django_conformance
    from django.core import checks

    with django_conformance.project(DEFAULT_TASKROUTE, {"environment": "production"}):
        assert "im_task.E009" in {message.id for message in checks.run_checks()}
    with django_conformance.project(DEFAULT_TASKROUTE, {"environment": "production", "front_authenticated": True}):
        ids = {message.id for message in checks.run_checks()}
    assert "im_task.E009" not in ids
    assert "im_task.W005" in ids
