"""Real Google-style OIDC tokens, offline: a local RSA key signs them, a server on 127.0.0.1 serves its certificate.

Tokens are made as Google makes them (RS256 JWTs with a ``kid`` header,
signed with :class:`google.auth.crypt.RSASigner` and :func:`google.auth.jwt.encode`);
the certificate is a self-signed X.509 certificate made with ``cryptography``,
served as Google serves its own at ``/oauth2/v1/certs``: a JSON object of PEM
certificates by key id, with a ``Cache-Control: max-age`` header.

Example:
    >>> key = SigningKey("key-1")  # doctest: +SKIP
    >>> with serve_certificates(key) as certs:  # doctest: +SKIP
    ...     set_certificates_url(certs.url)
    ...     token = key.token(claims(audience=AUDIENCE, email=SERVICE_ACCOUNT))
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from im_task.oidc import set_certificates_url
from im_task.testing import serve_wsgi

__all__ = ["AUDIENCE", "SERVICE_ACCOUNT", "CertificateServer", "SigningKey", "claims", "serve_certificates"]

#: The audience the tests configure and sign for.
AUDIENCE = "https://tasks.example.com"
#: The service account the tests configure and sign for.
SERVICE_ACCOUNT = "tasks@im-task-tests.iam.gserviceaccount.com"


class SigningKey:
    """A locally generated RSA key, its self-signed certificate, and tokens signed with it.

    Args:
        kid: The key id its tokens name and its certificate is served under.
    """

    def __init__(self, kid: str) -> None:
        self.kid = kid
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"im-task test key {kid}")])
        now = dt.datetime.now(dt.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(private, hashes.SHA256())
        )
        self.cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()

    def token(self, payload: dict[str, Any], *, kid: str | None = None, header: dict[str, Any] | None = None) -> str:
        """A JWT of ``payload`` signed with this key, naming ``kid`` (this key's by default)."""
        signer = crypt.RSASigner.from_string(self.private_pem, key_id=self.kid)  # type: ignore[no-untyped-call]
        encoded: bytes = jwt.encode(signer, payload, header=dict(header or {}), key_id=kid or self.kid)  # type: ignore[no-untyped-call]
        return encoded.decode()


def claims(*, audience: str = AUDIENCE, email: str = SERVICE_ACCOUNT, **overrides: Any) -> dict[str, Any]:
    """The claims of an OIDC token Cloud Tasks attaches, valid for an hour from now; ``overrides`` change or add some.

    An override of ``None`` removes the claim.
    """
    now = int(time.time())
    values: dict[str, Any] = {
        "aud": audience,
        "azp": "112233445566778899",
        "email": email,
        "email_verified": True,
        "exp": now + 3600,
        "iat": now,
        "iss": "https://accounts.google.com",
        "sub": "112233445566778899",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


class CertificateServer:
    """A WSGI app serving ``{kid: PEM}`` as Google's certificate endpoint does, counting the fetches.

    Attributes:
        keys: The keys whose certificates it serves; change it to rotate.
        cache_control: The ``Cache-Control`` header it sends (None: none).
        age: The ``Age`` header it sends (None: none).
        status: The status it answers; not 200 means an error page.
        delay: Seconds each answer takes.
        fetches: How many requests it answered.
        url: Its URL, once served.
    """

    def __init__(self, keys: Iterable[SigningKey], cache_control: str | None = "public, max-age=3600") -> None:
        self.keys = list(keys)
        self.cache_control = cache_control
        self.age: str | None = None
        self.status = 200
        self.body: bytes | None = None
        self.delay = 0.0
        self.fetches = 0
        self.url = ""
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            self.fetches += 1
        if self.delay:
            time.sleep(self.delay)
        if self.status != 200:
            start_response(f"{self.status} Error", [("Content-Type", "text/plain")])
            return [b"unavailable"]
        body = self.body or json.dumps({key.kid: key.cert_pem for key in self.keys}).encode()
        headers = [("Content-Type", "application/json; charset=UTF-8"), ("Content-Length", str(len(body)))]
        if self.cache_control is not None:
            headers.append(("Cache-Control", self.cache_control))
        if self.age is not None:
            headers.append(("Age", self.age))
        start_response("200 OK", headers)
        return [body]


@contextmanager
def serve_certificates(
    *keys: SigningKey, cache_control: str | None = "public, max-age=3600"
) -> Iterator[CertificateServer]:
    """Serves the certificates of ``keys`` on 127.0.0.1 until the block ends, however it ends."""
    server = CertificateServer(keys, cache_control)
    with serve_wsgi(server) as base_url:
        server.url = base_url + "/oauth2/v1/certs"
        yield server


@contextmanager
def certificates_in_force(*keys: SigningKey) -> Iterator[CertificateServer]:
    """Serves the certificates of ``keys`` on 127.0.0.1 and points this process's OIDC check at them.

    The certificate URL is part of the process state: the test's isolated settings put it back.
    """
    with serve_certificates(*keys) as server:
        set_certificates_url(server.url)
        yield server
