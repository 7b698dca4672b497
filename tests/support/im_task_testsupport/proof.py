"""Signing a hand-made delivery as im-task's own queues sign theirs, so that the endpoint trusts its counts."""

from __future__ import annotations

from collections.abc import Mapping

from im_task.deliveryproof import Attempt, proof_headers, signing_keyring
from im_task.headers import Headers, TaskHeaders

__all__ = ["proven"]


def proven(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """``headers`` with the queue proof of a delivery of ``body`` added, signed with the keyring in force.

    Headers without task queue headers, or settings that give no keyring (a test of broken settings), are
    returned as they are.
    """
    sent = dict(headers)
    task = TaskHeaders.parse(Headers(sent))
    keyring = signing_keyring(None)
    if task is None or keyring is None or task.retry_count < 0 or task.execution_count < 0:
        return sent
    attempt = Attempt(task.queue_name, task.task_name, task.retry_count, task.execution_count)
    sent.update(proof_headers(attempt, body, keyring))
    return sent
