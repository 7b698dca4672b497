"""Verifying the OIDC tokens Cloud Tasks attaches to HTTP-target tasks, against Google's cached certificates.

:mod:`im_task.caller` decides when a token is required; this module checks
one. Nothing is left to google-auth's defaults: the audience is passed and
checked again, and the issuer, the email and ``email_verified`` are checked
here. Google's certificates are fetched from :data:`GOOGLE_CERTS_URL` with
``urllib`` and kept for the ``max-age`` of the response's ``Cache-Control``
(less its ``Age``), once per process (in :data:`im_task.state.STATE`). A
token naming a key id that the cached certificates lack makes one early
refetch, at most every :data:`UNKNOWN_KEY_REFETCH_INTERVAL` seconds.
google-auth (``pip install 'im-task[gcp]'``) is imported only when a token
is checked.

Example:
    >>> from im_task.oidc import freshness
    >>> freshness("public, max-age=19591, must-revalidate", age="91")
    19500.0
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from im_task.errors import CallerError, ConfigurationError
from im_task.state import STATE

__all__ = [
    "ALGORITHM",
    "CLOCK_SKEW",
    "GOOGLE_CERTS_URL",
    "ISSUERS",
    "Certificates",
    "certificates_url",
    "freshness",
    "get_certificates",
    "require_google_auth",
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
    jwt, auth_error = require_google_auth()
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
        raise CallerError(f"the OIDC token does not verify: {_scrub(str(exc), token)!r}") from None
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


def require_google_auth() -> tuple[Any, type[Exception]]:
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
    except (ValueError, binascii.Error, RecursionError):  # RecursionError: JSON nested past the parser's limit
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
