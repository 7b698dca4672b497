"""The proof a queue of im-task's own puts on each delivery, so that its retry count can be trusted.

The endpoint decides with the retry count whether a task may still run
(``task_retry_limit``), so the count is trusted only from a caller that
proved itself: App Engine's own headers on App Engine, a valid OIDC token
on an HTTP target, or, in development, a queue of im-task's own. The local
queue and the in-process transports share the signing secret with the
endpoint, so they sign each attempt: :data:`PROOF_HEADER` carries the time
of the attempt, the key id and an HMAC-SHA256 of that time, the queue and
task names, the retry and execution counts, and the body. A proof is
accepted for :data:`PROOF_LIFETIME` seconds either side of the endpoint's
clock (the queue and the endpoint share a machine or a data directory).

Any other caller in development (a hand-made request, the Cloud Tasks
emulator) may still deliver, but its count decides nothing: the task's
retry limit is then left to the queue's own (see :mod:`im_task.executor`).

Example:
    >>> from im_task.keys import Keyring, read_stamp, stamp_time
    >>> keyring = Keyring([b"0123456789abcdefghijklmnopqrstuvwxyz"])
    >>> attempt = Attempt(queue="default", task_name="t1", retry_count=2, execution_count=2)
    >>> headers = proof_headers(attempt, b"body", keyring, now=1700000000.0)
    >>> proven(headers[PROOF_HEADER], attempt, b"body", keyring, now=1700000001.0)
    True
    >>> proven(headers[PROOF_HEADER], attempt._replace(retry_count=0), b"body", keyring, now=1700000001.0)
    False
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import NamedTuple

from im_task.errors import ConfigurationError
from im_task.headers import QUEUE_PROOF_HEADER
from im_task.keys import Keyring, read_stamp, stamp_time
from im_task.state import STATE

__all__ = [
    "PROOF_HEADER",
    "PROOF_LIFETIME",
    "Attempt",
    "KeyringSource",
    "check_keyring_source",
    "proof_headers",
    "proven",
    "signing_keyring",
]

#: The header of a delivery made by a queue of im-task's own: ``<seconds>.<fraction>.<key id>.<HMAC>``, hex.
PROOF_HEADER = QUEUE_PROOF_HEADER

#: Seconds a proof is accepted before or after the endpoint's clock.
PROOF_LIFETIME = 300.0

_CONTEXT = b"im-task-queue-proof\0"
_LENGTHS = struct.Struct(">IIIIIQ")  # the five fields', then the body's

#: What a queue is given to sign its deliveries with: the keys, a function that returns them, or None for the
#: keyring in force (:func:`im_task.config.get_keyring`), looked up at each delivery.
KeyringSource = Keyring | Callable[[], Keyring] | None


class Attempt(NamedTuple):
    """What a proof vouches for, besides the body: the queue headers of one attempt.

    Attributes:
        queue: The queue's name, as its ``QueueName`` header says.
        task_name: The task's name, as its ``TaskName`` header says.
        retry_count: The ``TaskRetryCount`` header: attempts before this one.
        execution_count: The ``TaskExecutionCount`` header.
    """

    queue: str
    task_name: str
    retry_count: int
    execution_count: int


def proof_headers(attempt: Attempt, body: bytes, keyring: Keyring, *, now: float | None = None) -> dict[str, str]:
    """The proof of one attempt, signed with the signing key, to add to the attempt's headers.

    Args:
        attempt: The queue headers the attempt carries.
        body: The body the attempt carries.
        keyring: The keys shared with the endpoint.
        now: The time of the attempt, seconds since the epoch (``time.time()`` by default).

    Returns:
        ``{PROOF_HEADER: value}``.
    """
    issued = stamp_time(time.time() if now is None else now)
    return {PROOF_HEADER: keyring.stamp(issued, *_message(issued, attempt, body))}


def proven(value: str | None, attempt: Attempt, body: bytes, keyring: Keyring, *, now: float | None = None) -> bool:
    """Whether a :data:`PROOF_HEADER` value proves that a queue sharing the secret sent this attempt.

    Args:
        value: The header's value, or None when the request has none.
        attempt: The queue headers the request carries.
        body: The request's body.
        keyring: The keys in force.
        now: The endpoint's time, seconds since the epoch (``time.time()`` by default).

    Returns:
        True when the proof verifies under a known key and is at most :data:`PROOF_LIFETIME`
        seconds from ``now``; False for no proof, a garbled, forged, altered or stale one.
    """
    stamp = read_stamp(value)
    if stamp is None or abs((time.time() if now is None else now) - stamp.moment) > PROOF_LIFETIME:
        return False
    return keyring.verify(stamp.kid, stamp.mac, *_message(stamp.issued, attempt, body))


def check_keyring_source(source: object) -> None:
    """Refuses what cannot be a :data:`KeyringSource`.

    Raises:
        ConfigurationError: ``source`` is neither a ``Keyring``, a callable nor None.
    """
    if source is not None and not isinstance(source, Keyring) and not callable(source):
        raise ConfigurationError(
            f"keyring must be a Keyring, a function that returns one, or None, not {type(source).__name__}."
        )


def signing_keyring(source: KeyringSource) -> Keyring | None:
    """The keys to sign the next delivery's proof with, or None when there are none to be had.

    Args:
        source: What the queue was given (see :data:`KeyringSource`).

    Returns:
        The keyring; None when no secret is configured where one is required (the endpoint cannot
        verify the task then either, and says so), so the delivery goes without a proof.

    Raises:
        ConfigurationError: The function given returned something other than a ``Keyring``.
    """
    if isinstance(source, Keyring):
        return source
    if source is None and STATE.keyring_resolver is None:  # im_task.config is not loaded: no settings to sign with
        return None
    try:
        keyring: object = source() if source is not None else STATE.keyring_in_force()
    except ConfigurationError:
        return None
    if not isinstance(keyring, Keyring):
        raise ConfigurationError(
            f"The keyring= function of the queue returned {type(keyring).__name__}, not an im_task.keys.Keyring: "
            "return Keyring([secret, ...]), or pass the Keyring itself."
        )
    return keyring


def _message(issued: str, attempt: Attempt, body: bytes) -> tuple[bytes, ...]:
    """The signed parts: the lengths of every field first, so that no two attempts share a message."""
    fields = (
        issued.encode(),
        attempt.queue.encode("utf-8", "surrogateescape"),
        attempt.task_name.encode("utf-8", "surrogateescape"),
        b"%d" % attempt.retry_count,
        b"%d" % attempt.execution_count,
    )
    lengths = _LENGTHS.pack(*map(len, fields), len(body))
    return (_CONTEXT, lengths, *fields, body)
