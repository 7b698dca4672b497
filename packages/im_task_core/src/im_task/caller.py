"""Who may call the task endpoint: the caller policy, and the OIDC check of Cloud Tasks HTTP targets.

The signature of the task body is what keeps forged tasks out (see
:mod:`im_task.envelope`). The caller check comes before it, before the body
is even read: it refuses requests that did not come from the task queue, so
that a captured task cannot be replayed by whoever can reach the endpoint.

A queue delivers a task with one of two header families: ``X-AppEngine-*``
to App Engine targets, ``X-CloudTasks-*`` to HTTP targets. App Engine
replaces ``X-AppEngine-*`` headers on requests from outside, so on App Engine
they prove the caller; nothing strips ``X-CloudTasks-*`` (nor, outside App
Engine, ``X-AppEngine-*``), so an HTTP-target task proves its caller with the
OIDC token Cloud Tasks attaches (``Authorization: Bearer ...``).

The policy, from the settings and the environment (``GAE_ENV`` is
``standard`` or ``flex`` on App Engine):

===========  ==================  ===============  ===================================================
environment  header family       OIDC configured  decision
===========  ==================  ===============  ===================================================
production   ``X-AppEngine-*``   either           on App Engine: accepted; elsewhere: refused
production   ``X-CloudTasks-*``  yes              a valid token is required
production   ``X-CloudTasks-*``  no               accepted with ``front_authenticated``; else refused
development  ``X-AppEngine-*``   either           accepted
development  ``X-CloudTasks-*``  yes              a valid token is required
development  ``X-CloudTasks-*``  no               accepted
===========  ==================  ===============  ===================================================

"OIDC configured" means ``service_account_email`` is set; the audience is
``audience``, or ``base_url`` when ``audience`` is not set. A token is valid
when its RS256 signature verifies against one of Google's certificates (the
one its key id names), its ``aud`` is exactly the audience, its ``iss`` is
``accounts.google.com`` or ``https://accounts.google.com``, its ``email`` is
exactly the service account, ``email_verified`` is true, and it has not
expired (allowing :data:`CLOCK_SKEW` seconds of clock difference).

At start-up (:func:`check_configuration`), production refuses to start when
the endpoint would receive HTTP-target tasks (outside App Engine, or with
``base_url`` set) without an OIDC configuration, unless ``front_authenticated``
says a front end authenticates every request (then a warning is logged).

Google's certificates are fetched from :data:`GOOGLE_CERTS_URL` with
``urllib`` and kept for the ``max-age`` of the response's ``Cache-Control``
(less its ``Age``), once per process (in :data:`im_task.state.STATE`). A
token naming a key id that the cached certificates lack makes one early
refetch, at most every :data:`UNKNOWN_KEY_REFETCH_INTERVAL` seconds. A failed
fetch refuses the request (403) and is logged; nothing is unpickled.

google-auth (``pip install 'im-task[gcp]'``) is imported only when a token
is checked.

Example:
    >>> from im_task.caller import CallerPolicy
    >>> from im_task.headers import APPENGINE, CLOUDTASKS
    >>> policy = CallerPolicy(production=True, on_app_engine=False)
    >>> policy.decide(APPENGINE).accepted, policy.decide(CLOUDTASKS).accepted
    (False, False)
    >>> CallerPolicy(production=False, on_app_engine=False).decide(CLOUDTASKS).accepted
    True
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from im_task.config import Settings
from im_task.errors import ConfigurationError, Error
from im_task.headers import APPENGINE, CLOUDTASKS
from im_task.state import STATE

__all__ = [
    "CLOCK_SKEW",
    "GOOGLE_CERTS_URL",
    "ISSUERS",
    "CallerError",
    "CallerPolicy",
    "Certificates",
    "Decision",
    "OidcConfig",
    "bearer_token",
    "certificates_url",
    "check_caller",
    "check_configuration",
    "freshness",
    "get_certificates",
    "on_app_engine",
    "set_certificates_url",
    "verify_oidc_token",
]

logger = logging.getLogger("im_task")

#: Where Google publishes the certificates of the keys that sign its OIDC tokens, as ``{key id: PEM}``.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
#: The issuers of Google's OIDC tokens.
ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
#: Seconds of difference allowed between our clock and Google's when checking ``iat`` and ``exp``.
CLOCK_SKEW = 10
#: How long certificates are kept when their response names no ``max-age``, in seconds.
DEFAULT_MAX_AGE = 300.0
#: A token with a key id the cached certificates lack refetches them at most this often, in seconds.
UNKNOWN_KEY_REFETCH_INTERVAL = 60.0
#: How long a certificate fetch may take, in seconds.
FETCH_TIMEOUT = 10.0
#: The largest certificate document read, in bytes.
MAX_CERTS_SIZE = 256 * 1024
#: The only signing algorithm Google uses for these tokens.
ALGORITHM = "RS256"

INSTALL_HINT = "pip install 'im-task[gcp]'"

_fetch_lock = threading.Lock()  # one fetch at a time; readers of a fresh cache never wait for it


class CallerError(Error):
    """The caller check refused a request: answered 403, nothing is unpickled.

    The message says why, for the log; it never contains the token.
    """


@dataclass(frozen=True)
class OidcConfig:
    """What an OIDC token of a task must say.

    Attributes:
        service_account_email: The ``email`` the token must carry.
        audience: The ``aud`` the token must carry.
    """

    service_account_email: str
    audience: str

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcConfig | None:
        """The OIDC configuration of the settings, or None when ``service_account_email`` is not set.

        Raises:
            ConfigurationError: The configuration is incomplete (an audience
                without a service account, or a service account without
                ``audience`` or ``base_url``).
        """
        audience = settings.audience or settings.base_url
        if settings.service_account_email is None:
            if settings.audience is not None:
                raise ConfigurationError(
                    "audience is set but service_account_email is not, so tokens cannot be checked: set "
                    "IM_TASK_SERVICE_ACCOUNT_EMAIL (or configure(service_account_email=...), or your framework's "
                    "im-task setting) to the service account whose OIDC token the tasks carry, or unset audience."
                )
            return None
        if audience is None:
            raise ConfigurationError(
                "service_account_email is set but there is no audience to check the tokens against: set "
                "IM_TASK_AUDIENCE (or configure(audience=...)) to the audience of the tasks' OIDC tokens, or "
                "IM_TASK_BASE_URL to the application's URL, which is the audience by default."
            )
        return cls(settings.service_account_email, audience)


@dataclass(frozen=True)
class Decision:
    """What the policy asks of a request with a given header family.

    Attributes:
        accepted: Whether the family may call at all.
        token_required: Whether a valid OIDC token is required as well.
        reason: Why it is refused, for the log (empty when accepted).
    """

    accepted: bool
    token_required: bool = False
    reason: str = ""


_ACCEPT = Decision(True)
_TOKEN = Decision(True, token_required=True)


@dataclass(frozen=True)
class CallerPolicy:
    """Which callers the endpoint accepts (see the module docstring for the table).

    Attributes:
        production: Whether the environment is production.
        on_app_engine: Whether this process runs on App Engine, whose front end
            replaces ``X-AppEngine-*`` headers on outside requests.
        oidc: The OIDC configuration, or None.
        front_authenticated: Whether a front end authenticates every request
            before it reaches the application (the opt-out of the OIDC check).
        http_targets: Whether tasks are HTTP-target tasks (``base_url`` is set).
    """

    production: bool
    on_app_engine: bool
    oidc: OidcConfig | None = None
    front_authenticated: bool = False
    http_targets: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CallerPolicy:
        """The policy of the settings in this process's environment.

        Raises:
            ConfigurationError: The OIDC configuration is incomplete.
        """
        return cls(
            production=settings.production,
            on_app_engine=on_app_engine(),
            oidc=OidcConfig.from_settings(settings),
            front_authenticated=settings.front_authenticated,
            http_targets=settings.base_url is not None,
        )

    def decide(self, family: str) -> Decision:
        """What a request with the task headers of ``family`` must show.

        Args:
            family: :data:`~im_task.headers.APPENGINE` or :data:`~im_task.headers.CLOUDTASKS`.
        """
        if family == APPENGINE:
            if not self.production or self.on_app_engine:
                return _ACCEPT
            return Decision(
                False,
                reason="X-AppEngine-* task headers outside App Engine, where nothing strips them from outside "
                "requests, so they prove nothing (Cloud Tasks sends X-CloudTasks-* to HTTP targets)",
            )
        if family != CLOUDTASKS:
            return Decision(False, reason=f"unknown task header family {family!r}")
        if self.oidc is not None:
            return _TOKEN
        if not self.production or self.front_authenticated:
            return _ACCEPT
        where = "on App Engine, which does not strip them" if self.on_app_engine else "and nothing strips them"
        return Decision(
            False,
            reason=f"X-CloudTasks-* task headers in production {where}, and no OIDC check is configured "
            "(set service_account_email, or front_authenticated if a front end authenticates every request)",
        )

    def refusal_at_startup(self) -> str | None:
        """Why an application with this policy must not start, or None."""
        if not self.production or self.oidc is not None or self.front_authenticated:
            return None
        if self.on_app_engine and not self.http_targets:
            return None  # App Engine targets, proven by headers App Engine strips from outside requests
        why = (
            "This is production with base_url set, so tasks are Cloud Tasks HTTP-target tasks,"
            if self.on_app_engine
            else "This is production outside App Engine, so tasks arrive as Cloud Tasks HTTP-target tasks,"
        )
        return (
            f"{why} whose X-CloudTasks-* headers anyone can send, and no OIDC check is configured. Set "
            "IM_TASK_SERVICE_ACCOUNT_EMAIL (or configure(service_account_email=...), or your framework's im-task "
            "setting) to the service account whose OIDC token Cloud Tasks attaches to the tasks, and "
            "IM_TASK_AUDIENCE (or IM_TASK_BASE_URL) to the token's audience. If a front end authenticates every "
            'request before it reaches the application (Cloud Run\'s "require authentication"), set '
            "IM_TASK_FRONT_AUTHENTICATED=true instead, knowing its risk (see the im-task security docs)."
        )

    def warnings(self) -> list[str]:
        """What to log at start-up about this policy."""
        if self.production and self.front_authenticated and self.oidc is None:
            return [
                "im-task: front_authenticated is set, so tasks with X-CloudTasks-* headers are accepted without "
                "an OIDC check. This is safe only if every request that reaches the application was authenticated "
                'in front of it (e.g. Cloud Run\'s "require authentication", with the invoker role granted only to '
                "the tasks' service account): a request that reaches the application any other way with a task "
                "captured earlier is run again. Set service_account_email to verify the tokens here too."
            ]
        return []


def on_app_engine() -> bool:
    """Whether this process runs on App Engine (``GAE_ENV`` is ``standard`` or ``flex``)."""
    return os.environ.get("GAE_ENV") in ("standard", "flex")


def check_configuration(settings: Settings) -> list[str]:
    """Refuses a caller configuration that is unsafe or cannot work; adapters reach it at start-up.

    Args:
        settings: The settings in force.

    Returns:
        Warnings to log (the ``front_authenticated`` opt-out in production).

    Raises:
        ConfigurationError: Saying what to set: production that would accept
            HTTP-target tasks without an OIDC check, an incomplete OIDC
            configuration, or one without google-auth installed.
    """
    policy = CallerPolicy.from_settings(settings)
    refusal = policy.refusal_at_startup()
    if refusal is not None:
        raise ConfigurationError(refusal)
    if policy.oidc is not None:
        _google_auth_jwt()
    return policy.warnings()


def check_caller(family: str, headers: Mapping[str, str], settings: Settings) -> None:
    """Checks the caller of one request to the task endpoint; the executor calls it before reading the body.

    Args:
        family: The family of its task headers (``TaskHeaders.family``).
        headers: The request headers (case-insensitive).
        settings: The settings in force.

    Raises:
        CallerError: The caller is refused (answer 403).
        ConfigurationError: The caller check cannot be made (an incomplete OIDC
            configuration, google-auth not installed): im-task is misconfigured.
    """
    policy = CallerPolicy.from_settings(settings)
    decision = policy.decide(family)
    if not decision.accepted:
        raise CallerError(f"refused by the caller policy: {decision.reason}.")
    oidc = policy.oidc
    if not decision.token_required or oidc is None:  # a token is required only with an OIDC configuration
        return
    token = bearer_token(headers)
    if token is None:
        raise CallerError("no OIDC token (an 'Authorization: Bearer' header) on an HTTP-target task.")
    verify_oidc_token(token, audience=oidc.audience, service_account_email=oidc.service_account_email)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None.

    Args:
        headers: The request headers; looked up as ``Authorization`` or ``authorization``
            unless the mapping is case-insensitive.
    """
    value = headers.get("Authorization")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def verify_oidc_token(
    token: str,
    *,
    audience: str,
    service_account_email: str,
    certs_url: str | None = None,
) -> Mapping[str, Any]:
    """Verifies a Google-signed OIDC token as Cloud Tasks attaches it to HTTP-target tasks.

    Nothing is left to google-auth's defaults: the audience is passed
    explicitly and checked again, and the issuer, the email and
    ``email_verified`` are checked here.

    Args:
        token: The token (the JWT of the ``Authorization: Bearer`` header).
        audience: The ``aud`` it must carry, exactly.
        service_account_email: The ``email`` it must carry, exactly.
        certs_url: Where the certificates are, as ``{key id: PEM}``; :func:`certificates_url` by default.

    Returns:
        The token's claims.

    Raises:
        CallerError: The token does not verify; the message says why and never contains the token.
        ConfigurationError: google-auth is not installed.
    """
    if not audience or not service_account_email:
        raise ConfigurationError("verify_oidc_token needs a non-empty audience and service_account_email.")
    jwt, auth_error = _google_auth_jwt()
    key_id = _key_id(token)
    url = certs_url or certificates_url()
    certificates = get_certificates(url)
    if key_id not in certificates.pems:
        refreshed = _refetch_for_unknown_key(url, certificates)
        if refreshed is None or key_id not in refreshed.pems:
            raise CallerError(f"the OIDC token names key id {key_id!r}, which is not among Google's certificates.")
        certificates = refreshed
    try:
        claims = jwt.decode(
            token,
            certs={key_id: certificates.pems[key_id]},
            verify=True,
            audience=audience,
            clock_skew_in_seconds=CLOCK_SKEW,
        )
    except (auth_error, ValueError, TypeError) as exc:
        raise CallerError(f"the OIDC token does not verify: {_scrub(str(exc), token)}") from None
    if not isinstance(claims, Mapping):
        raise CallerError("the OIDC token's claims are not a JSON object.")
    if claims.get("aud") != audience:
        raise CallerError(f"the OIDC token's audience is {claims.get('aud')!r}, not {audience!r}.")
    if claims.get("iss") not in ISSUERS:
        raise CallerError(
            f"the OIDC token's issuer is {claims.get('iss')!r}, not Google ({' or '.join(sorted(ISSUERS))})."
        )
    if claims.get("email") != service_account_email:
        raise CallerError(f"the OIDC token's email is {claims.get('email')!r}, not {service_account_email!r}.")
    if claims.get("email_verified") is not True:
        raise CallerError("the OIDC token's email is not verified (email_verified is not true).")
    return claims


def _google_auth_jwt() -> tuple[Any, type[Exception]]:
    """google-auth's ``jwt`` module and its base exception, imported when first needed."""
    try:
        from google.auth import exceptions, jwt
    except ImportError as exc:
        raise ConfigurationError(
            f"Checking the OIDC tokens of tasks (service_account_email is set) needs google-auth: {INSTALL_HINT}."
        ) from exc
    return jwt, exceptions.GoogleAuthError


def _key_id(token: str) -> str:
    """The key id of a token's header, after checking that the token is a JWS signed with RS256."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise CallerError("the OIDC token is not a signed JWT (three base64url segments).")
    try:
        header = json.loads(_b64decode(parts[0]))
        json.loads(_b64decode(parts[1]))
    except (ValueError, binascii.Error):
        raise CallerError("the OIDC token's header or claims are not base64url-encoded JSON.") from None
    if not isinstance(header, dict):
        raise CallerError("the OIDC token's header is not a JSON object.")
    if header.get("alg") != ALGORITHM:
        raise CallerError(f"the OIDC token is signed with {header.get('alg')!r}; Google signs with {ALGORITHM}.")
    key_id = header.get("kid")
    if not isinstance(key_id, str) or not key_id:
        raise CallerError("the OIDC token names no key id (kid).")
    return key_id


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _scrub(message: str, token: str) -> str:
    """A library's message without any piece of the token (some name a segment they could not parse)."""
    for part in sorted(token.split("."), key=len, reverse=True):
        if len(part) >= 8:
            message = message.replace(part, "<token>")
    return message


# Google's certificates, cached for the process.


@dataclass(frozen=True)
class Certificates:
    """Certificates fetched once, kept until they expire.

    Attributes:
        url: Where they were fetched from.
        pems: PEM certificates by key id.
        fetched_at: When they were fetched (``time.monotonic()``).
        expires_at: When they must be fetched again (``time.monotonic()``).
    """

    url: str
    pems: Mapping[str, str] = field(repr=False)
    fetched_at: float
    expires_at: float

    def fresh(self, url: str) -> bool:
        """Whether these are the certificates of ``url`` and have not expired."""
        return self.url == url and time.monotonic() < self.expires_at


def certificates_url() -> str:
    """Where this process fetches Google's certificates: :data:`GOOGLE_CERTS_URL` unless set otherwise."""
    with STATE.lock:
        url = STATE.oidc_certs_url
    return url or GOOGLE_CERTS_URL


def set_certificates_url(url: str | None) -> None:
    """Fetches the certificates from another URL (tests serve their own), or from Google's again with None.

    Args:
        url: An http(s) URL answering ``{key id: PEM}`` as JSON, or None.

    Raises:
        ConfigurationError: ``url`` is not an absolute http(s) URL.
    """
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"The certificates URL must be an absolute http(s) URL, not {url!r}.")
    with STATE.lock:
        STATE.oidc_certs_url = url
        STATE.oidc_certs = None


def get_certificates(url: str | None = None) -> Certificates:
    """Google's certificates, from the process's cache while they are fresh.

    Thread-safe: while they are fresh nobody waits; when they are not, one
    thread fetches and the others wait for it and share its result.

    Args:
        url: Where they are; :func:`certificates_url` by default.

    Raises:
        CallerError: They could not be fetched, or the answer is not ``{key id: PEM}``.
    """
    url = url or certificates_url()
    cached = _cached()
    if cached is not None and cached.fresh(url):
        return cached
    with _fetch_lock:
        cached = _cached()
        if cached is not None and cached.fresh(url):
            return cached  # fetched by another thread meanwhile
        return _store(_fetch(url))


def _refetch_for_unknown_key(url: str, seen: Certificates) -> Certificates | None:
    """Fetches again for a token whose key id ``seen`` lacks (Google added a key), unless fetched too recently."""
    with _fetch_lock:
        cached = _cached()
        if cached is not None and cached is not seen and cached.fresh(url):
            return cached  # another thread refetched meanwhile
        if time.monotonic() - seen.fetched_at < UNKNOWN_KEY_REFETCH_INTERVAL:
            return None  # a stream of made-up key ids must not become a stream of fetches
        return _store(_fetch(url))


def _cached() -> Certificates | None:
    with STATE.lock:
        cached: Certificates | None = STATE.oidc_certs
    return cached


def _store(certificates: Certificates) -> Certificates:
    with STATE.lock:
        STATE.oidc_certs = certificates
    return certificates


def _fetch(url: str) -> Certificates:
    import urllib.error  # imported when first used: they load http.client, ssl and email
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "im-task"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
            body = response.read(MAX_CERTS_SIZE + 1)
            cache_control = response.headers.get("Cache-Control")
            age = response.headers.get("Age")
    except urllib.error.HTTPError as exc:
        raise CallerError(f"could not fetch Google's certificates from {url}: HTTP {exc.code}.") from None
    except (OSError, ValueError) as exc:
        raise CallerError(f"could not fetch Google's certificates from {url}: {exc}.") from None
    if len(body) > MAX_CERTS_SIZE:
        raise CallerError(f"the certificates at {url} are larger than {MAX_CERTS_SIZE} bytes.")
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if (
        not isinstance(document, dict)
        or not document
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in document.items())
    ):
        raise CallerError(f"the certificates at {url} are not a JSON object of PEM certificates by key id.")
    return Certificates(
        url=url,
        pems=MappingProxyType(dict(document)),
        fetched_at=started,
        expires_at=started + freshness(cache_control, age),
    )


def freshness(cache_control: str | None, age: str | None = None) -> float:
    """How long a response may be kept, in seconds, from its ``Cache-Control`` and ``Age`` headers.

    ``max-age`` less ``Age``; 0 with ``no-store`` or ``no-cache``;
    :data:`DEFAULT_MAX_AGE` when there is no valid ``max-age``.

    Example:
        >>> freshness("public, max-age=19204, must-revalidate, no-transform", "4")
        19200.0
    """
    max_age: float | None = None
    for directive in (cache_control or "").split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age":
            try:
                max_age = float(int(value.strip().strip('"')))
            except ValueError:
                max_age = None
    if max_age is None:
        return DEFAULT_MAX_AGE
    try:
        already = max(int(age or 0), 0)
    except ValueError:
        already = 0
    return max(max_age - already, 0.0)
