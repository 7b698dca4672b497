"""Who may call the task endpoint: refusing unsafe production settings, and checking the OIDC tokens of HTTP targets.

The script plays Google offline: a locally generated RSA key signs the
tokens (as Google signs those Cloud Tasks attaches), and a server on
127.0.0.1 serves its certificate as Google serves its own. The endpoint is
served by a real HTTP server on 127.0.0.1. It exits with status 0 only if
every answer is the documented one. It needs google-auth
(``pip install 'im-task[gcp]'``), which brings ``cryptography``.
"""

import datetime as dt
import http.client
import json
import time
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from im_task import ConfigurationError, configure, task
from im_task.headers import APPENGINE, CLOUDTASKS, make_task_headers
from im_task.oidc import set_certificates_url
from im_task.runtime import check_configuration
from im_task.testing import serve_wsgi
from im_task.transports import RecordingTransport
from im_task.wsgi import TaskWSGIApp

recorder = RecordingTransport()
configure(transport=recorder, secret="callers-example-secret-0123456789")

# [start refused]
configure(environment="production")  # outside App Engine: tasks arrive as HTTP-target tasks
try:
    check_configuration()  # adapters call this at start-up
except ConfigurationError as exc:
    print(f"Refused: {exc}")
else:
    raise AssertionError("production outside App Engine without an OIDC check must be refused")
# [end refused]

# [start oidc]
configure(
    environment="production",
    service_account_email="tasks@my-project.iam.gserviceaccount.com",  # the task's oidc_token.service_account_email
    audience="https://app.example.com",  # its oidc_token.audience (base_url when not set)
)
check_configuration()  # starts
# [end oidc]


def google_key(kid):
    """A signer for tokens naming ``kid``, and the PEM certificate Google would publish for it."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example key")])
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
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return crypt.RSASigner.from_string(pem, key_id=kid), certificate.public_bytes(serialization.Encoding.PEM).decode()


signer, certificate = google_key("key-1")
fetches = []


def certificates_app(environ, start_response):
    """Google's https://www.googleapis.com/oauth2/v1/certs, played on 127.0.0.1: {key id: PEM}, with a max-age."""
    fetches.append(time.time())
    body = json.dumps({"key-1": certificate}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "public, max-age=3600")])
    return [body]


def token(**changes):
    """An OIDC token as Cloud Tasks attaches it, with some claims changed."""
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": "https://app.example.com",
        "email": "tasks@my-project.iam.gserviceaccount.com",
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
        "sub": "1234567890",
    }
    claims.update(changes)
    return jwt.encode(signer, claims).decode()


def post(base_url, request, family, bearer=None):
    """POSTs a recorded task as Cloud Tasks would; returns the status."""
    headers = {**request.headers, **make_task_headers(queue_name="default", task_name="t1", family=family)}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("POST", request.url, body=request.body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


ran = []


@task
def hello(name):
    ran.append(name)


hello("world")
request = recorder.requests[-1]

# [start checked]
with serve_wsgi(certificates_app) as certs, serve_wsgi(TaskWSGIApp()) as app:
    set_certificates_url(certs + "/oauth2/v1/certs")  # only for this offline example: Google's URL is the default
    statuses = {
        "no token": post(app, request, CLOUDTASKS),
        "wrong audience": post(app, request, CLOUDTASKS, token(aud="https://elsewhere.example.com")),
        "other account": post(app, request, CLOUDTASKS, token(email="someone@example.com")),
        "expired": post(app, request, CLOUDTASKS, token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
        "X-AppEngine-* outside App Engine": post(app, request, APPENGINE, token()),
        "good token": post(app, request, CLOUDTASKS, token()),
        "another good token": post(app, request, CLOUDTASKS, token()),
    }
assert statuses == {
    "no token": 403,
    "wrong audience": 403,
    "other account": 403,
    "expired": 403,
    "X-AppEngine-* outside App Engine": 403,
    "good token": 200,
    "another good token": 200,
}, statuses
assert ran == ["world", "world"]  # nothing refused was run (nor unpickled)
assert len(fetches) == 1  # the certificates are kept for their max-age
# [end checked]

# [start front]
configure(service_account_email=None, audience=None, front_authenticated=True)
check_configuration()  # starts, logging a warning that says the risk
# [end front]
print("Every check holds.")
