"""The wire format: a versioned, signed envelope around the serialised call.

Layout: one version byte, the 8-byte id of the signing key, the 32-byte
HMAC-SHA256 of the version, key id and payload, then the payload. Nothing is
unpickled unless the MAC verifies.
"""

from __future__ import annotations

from im_task.errors import SignatureError
from im_task.keys import KEY_ID_SIZE, Keyring

__all__ = ["CONTENT_TYPE", "VERSION", "open_envelope", "seal"]

VERSION = 1
CONTENT_TYPE = "application/octet-stream"
_MAC_SIZE = 32
_HEADER_SIZE = 1 + KEY_ID_SIZE + _MAC_SIZE


def seal(payload: bytes, keyring: Keyring) -> bytes:
    """Signs a payload into an envelope.

    Args:
        payload: The serialised call.
        keyring: Keys; the first one signs.

    Returns:
        The envelope bytes.
    """
    prefix = bytes([VERSION]) + keyring.signing_id
    return prefix + keyring.sign(prefix + payload) + payload


def open_envelope(body: bytes, keyring: Keyring) -> bytes:
    """Verifies an envelope and returns its payload.

    Args:
        body: The request body.
        keyring: Keys that may have signed it.

    Returns:
        The payload, safe to deserialise.

    Raises:
        SignatureError: The body is not an envelope of a known version, or its
            MAC does not verify under a known key.
    """
    if len(body) < _HEADER_SIZE:
        raise SignatureError("The body is too short to be a task envelope.")
    if body[0] != VERSION:
        raise SignatureError(f"Unknown envelope version {body[0]}.")
    kid = body[1 : 1 + KEY_ID_SIZE]
    mac = body[1 + KEY_ID_SIZE : _HEADER_SIZE]
    payload = body[_HEADER_SIZE:]
    if not keyring.verify(kid, body[: 1 + KEY_ID_SIZE] + payload, mac):
        raise SignatureError("The task envelope's signature does not verify under any configured secret.")
    return payload
