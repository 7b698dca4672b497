"""Re-runs: the signed mark that says a delivery was asked for again (a replay, a queue retry), not duplicated.

A queue may deliver a task more than once; a task that keeps a final state
of its own (a Django ``TaskResult`` that is ``FAILED``) must tell such a
duplicate from a person's explicit request to run it again. ``im-task dead
replay`` (and the admin's "Replay") and ``im-task queue retry`` send the task
with a :data:`RERUN_HEADER`: the time of the request, signed with the
signing secret. The endpoint hands it to the task as one of its headers
(the only request header a task with a bound envelope sees besides its
own), and :func:`rerun_time` gives back the time once the signature verifies.

A mark says "run this again if it finished before this time": a duplicate
delivery of the re-run itself, once that finished, is still a duplicate.

Example:
    >>> from im_task.keys import Keyring, read_stamp, stamp_time
    >>> keyring = Keyring([b"0123456789abcdefghijklmnopqrstuvwxyz"])
    >>> headers = rerun_headers(now=1700000000.5, keyring=keyring)
    >>> rerun_time(headers, keyring=keyring)
    1700000000.5
    >>> rerun_time({RERUN_HEADER: "1700000000.5.00.00"}, keyring=keyring) is None
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from im_task.config import get_keyring
from im_task.keys import Keyring, read_stamp, stamp_time

__all__ = ["RERUN_HEADER", "rerun_headers", "rerun_time"]

#: The header of a delivery asked for again: ``<seconds since the epoch>.<key id>.<HMAC>``, hex.
RERUN_HEADER = "X-Im-Task-Rerun"
_CONTEXT = b"im-task-rerun\0"


def rerun_headers(*, now: float | None = None, keyring: Keyring | None = None) -> dict[str, str]:
    """The header that marks a task sent again on purpose, signed with the signing secret.

    Args:
        now: The time of the request, seconds since the epoch (``time.time()`` by default).
        keyring: The keys to sign with; the keyring in force when None.

    Returns:
        ``{RERUN_HEADER: value}``, to add to the task's headers.

    Raises:
        ValueError: ``now`` is not a finite number of seconds >= 0.
        ConfigurationError: No secret is configured.
    """
    moment = time.time() if now is None else now
    if isinstance(moment, bool) or not isinstance(moment, (int, float)) or not math.isfinite(moment) or moment < 0:
        raise ValueError(f"now must be seconds since the epoch, not {now!r}.")
    issued = stamp_time(moment)
    return {RERUN_HEADER: (keyring or get_keyring()).stamp(issued, _CONTEXT, issued.encode())}


def rerun_time(headers: Mapping[str, str] | None, *, keyring: Keyring | None = None) -> float | None:
    """When a delivery was asked for again, once its :data:`RERUN_HEADER` verifies; None for any other delivery.

    Args:
        headers: The request's (or the task's) headers; a case-insensitive mapping, or names as sent.
        keyring: The keys to verify with; the keyring in force when None.

    Returns:
        The time of the request in seconds since the epoch, or None when there is no mark or it does
        not verify (a forged or garbled mark counts as none).
    """
    if not headers:
        return None
    value = headers.get(RERUN_HEADER)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == RERUN_HEADER.lower()), None)
    stamp = read_stamp(value)
    if stamp is None or not (keyring or get_keyring()).verify(stamp.kid, stamp.mac, _CONTEXT, stamp.issued.encode()):
        return None
    return stamp.moment
