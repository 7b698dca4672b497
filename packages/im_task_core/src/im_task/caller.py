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
development  ``X-AppEngine-*``   either           accepted; unproven unless on App Engine
development  ``X-CloudTasks-*``  yes              a valid token is required
development  ``X-CloudTasks-*``  no               accepted; unproven unless ``front_authenticated``
===========  ==================  ===============  ===================================================

Every caller production accepts has proved it is the queue, and
:func:`check_caller` says so; the endpoint trusts the retry count (against
``task_retry_limit``) only from such a caller, or from a delivery that
carries the signed proof of im-task's own queues (:mod:`im_task.deliveryproof`).

"OIDC configured" means ``service_account_email`` is set; the audience is
``audience``, or ``base_url`` when ``audience`` is not set. A token is valid
when its RS256 signature verifies against one of Google's certificates (the
one its key id names), its ``aud`` is exactly the audience, its ``iss`` is
``accounts.google.com`` or ``https://accounts.google.com``, its ``email`` is
exactly the service account, ``email_verified`` is true, and it has not
expired (allowing :data:`im_task.oidc.CLOCK_SKEW` seconds of clock difference).

At start-up (:func:`check_configuration`), production refuses to start when
the endpoint would receive HTTP-target tasks (outside App Engine, or with
``base_url`` set) without an OIDC configuration, unless ``front_authenticated``
says a front end authenticates every request (then a warning is logged).

:mod:`im_task.oidc` verifies the tokens, against Google's certificates,
cached for their ``max-age``. A failed certificate fetch refuses the request
(403) and is logged; nothing is unpickled.

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

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from im_task.config import Settings
from im_task.errors import CallerError, ConfigurationError
from im_task.headers import APPENGINE, CLOUDTASKS
from im_task.oidc import require_google_auth, verify_oidc_token

__all__ = [
    "CallerError",
    "CallerPolicy",
    "Decision",
    "OidcConfig",
    "bearer_token",
    "check_caller",
    "check_configuration",
    "on_app_engine",
]

logger = logging.getLogger("im_task")


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
        proven: Whether an accepted caller is known to be the queue (App Engine's own headers on App Engine, a
            front end that authenticates every request, or, once it verifies, the required token), so that its
            retry count may be trusted. A caller accepted without proof (development) may still deliver.
    """

    accepted: bool
    token_required: bool = False
    reason: str = ""
    proven: bool = False


_ACCEPT = Decision(True)
_PROVEN = Decision(True, proven=True)
_TOKEN = Decision(True, token_required=True, proven=True)


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
            if self.on_app_engine:  # App Engine's front end replaces these headers on outside requests
                return _PROVEN
            if not self.production:
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
        if self.front_authenticated:
            return _PROVEN
        if not self.production:
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
        require_google_auth()
    return policy.warnings()


def check_caller(family: str, headers: Mapping[str, str], settings: Settings) -> bool:
    """Checks the caller of one request to the task endpoint; the executor calls it before reading the body.

    Args:
        family: The family of its task headers (``TaskHeaders.family``).
        headers: The request headers (case-insensitive).
        settings: The settings in force.

    Returns:
        Whether the caller proved it is the queue (see :attr:`Decision.proven`); False for a
        caller accepted without proof, which only development accepts.

    Raises:
        CallerError: The caller is refused (answer 403).
        ConfigurationError: The caller check cannot be made (an incomplete OIDC
            configuration, google-auth not installed): im-task is misconfigured.
    """
    policy = _policy_of(settings)
    decision = policy.decide(family)
    if not decision.accepted:
        raise CallerError(f"refused by the caller policy: {decision.reason}.")
    oidc = policy.oidc
    if not decision.token_required or oidc is None:  # a token is required only with an OIDC configuration
        return decision.proven
    token = bearer_token(headers)
    if token is None:
        raise CallerError("no OIDC token (an 'Authorization: Bearer' header) on an HTTP-target task.")
    verify_oidc_token(token, audience=oidc.audience, service_account_email=oidc.service_account_email)
    return True


def _policy_of(settings: Settings) -> CallerPolicy:
    """``CallerPolicy.from_settings(settings)``, kept while the settings and ``GAE_ENV`` stay the same.

    Raises:
        ConfigurationError: The OIDC configuration is incomplete (never kept).
    """
    app_engine = on_app_engine()
    last = _last_policy[0]
    if last is not None and last[0] is settings and last[1] == app_engine:
        return last[2]
    policy = CallerPolicy.from_settings(settings)
    _last_policy[0] = (settings, app_engine, policy)
    return policy


#: The settings and App Engine flag the last policy was made for, and the policy (see :func:`_policy_of`).
_last_policy: list[tuple[Settings, bool, CallerPolicy] | None] = [None]


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
