"""The wire format: a versioned, signed envelope around the serialised call, or around a reference to it.

Layout: one version byte, the 8-byte id of the signing key, the 32-byte
HMAC-SHA256 of the version, key id and payload, then the payload. Nothing is
unpickled unless the MAC verifies.

Version 1 carries the serialised call itself. Version 2
(:data:`REFERENCE_VERSION`) carries a :class:`PayloadReference` instead, for
a call too large to travel inline: the name of the payload store, the key of
the stored payload, its SHA-256 and its size, as JSON, signed with the same
keyring. The endpoint verifies the envelope, loads the payload from the
store and checks its hash before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from im_task.errors import SignatureError
from im_task.keys import KEY_ID_SIZE, Keyring

__all__ = [
    "CONTENT_TYPE",
    "REFERENCE_VERSION",
    "VERSION",
    "PayloadReference",
    "open_envelope",
    "open_sealed",
    "seal",
    "seal_reference",
]

VERSION = 1
#: The version byte of an envelope carrying a :class:`PayloadReference`.
REFERENCE_VERSION = 2
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
    return _seal(VERSION, payload, keyring)


@dataclass(frozen=True)
class PayloadReference:
    """Where a payload too large to travel inline was stored, and how to know it again.

    Attributes:
        store: The name of the payload store (``"local"``, ``"ndb"``...).
        key: The payload's key in that store.
        sha256: The SHA-256 of the payload, in hex; the endpoint checks it before unpickling.
        size: The payload's size in bytes.
    """

    store: str
    key: str
    sha256: str
    size: int

    @classmethod
    def of(cls, store: str, key: str, payload: bytes) -> PayloadReference:
        """The reference to ``payload`` stored under ``key`` in ``store``."""
        return cls(store, key, hashlib.sha256(payload).hexdigest(), len(payload))

    def matches(self, payload: bytes) -> bool:
        """Whether ``payload`` is the one referred to (size and SHA-256, compared in constant time)."""
        return len(payload) == self.size and hmac.compare_digest(hashlib.sha256(payload).hexdigest(), self.sha256)

    def to_bytes(self) -> bytes:
        """The reference as the JSON an envelope carries."""
        fields = {"store": self.store, "key": self.key, "sha256": self.sha256, "size": self.size}
        return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PayloadReference:
        """Reads the JSON of :meth:`to_bytes` (from a verified envelope).

        Raises:
            ValueError: The data is not such a reference.
        """
        fields = json.loads(data.decode())
        if not isinstance(fields, dict) or set(fields) != {"store", "key", "sha256", "size"}:
            raise ValueError("not a payload reference")
        store, key, sha256, size = fields["store"], fields["key"], fields["sha256"], fields["size"]
        if not (isinstance(store, str) and isinstance(key, str) and isinstance(sha256, str) and len(sha256) == 64):
            raise ValueError("not a payload reference")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError("not a payload reference")
        return cls(store, key, sha256, size)


def seal_reference(reference: PayloadReference, keyring: Keyring) -> bytes:
    """Signs a payload reference into an envelope (version :data:`REFERENCE_VERSION`).

    Args:
        reference: Where the payload is stored.
        keyring: Keys; the first one signs.

    Returns:
        The envelope bytes.
    """
    if not isinstance(reference, PayloadReference):
        raise TypeError(f"seal_reference() takes a PayloadReference, not {type(reference).__name__}.")
    return _seal(REFERENCE_VERSION, reference.to_bytes(), keyring)


def open_sealed(body: bytes, keyring: Keyring) -> bytes | PayloadReference:
    """Verifies an envelope of either version: the payload itself, or the reference to a stored one.

    Args:
        body: The request body.
        keyring: Keys that may have signed it.

    Returns:
        The payload (safe to deserialise), or the verified reference (load
        the payload and check it with :meth:`PayloadReference.matches` first).

    Raises:
        SignatureError: The body is not an envelope of a known version, its
            MAC does not verify under a known key, or a verified reference is malformed.
    """
    version, payload = _open(body, keyring, (VERSION, REFERENCE_VERSION))
    if version == VERSION:
        return payload
    try:
        return PayloadReference.from_bytes(payload)
    except ValueError:
        raise SignatureError("The task envelope holds a malformed payload reference.") from None


def _seal(version: int, payload: bytes, keyring: Keyring) -> bytes:
    prefix = bytes([version]) + keyring.signing_id
    return prefix + keyring.sign(prefix + payload) + payload


def _open(body: bytes, keyring: Keyring, versions: tuple[int, ...]) -> tuple[int, bytes]:
    if len(body) < _HEADER_SIZE:
        raise SignatureError("The body is too short to be a task envelope.")
    if body[0] not in versions:
        raise SignatureError(f"Unknown envelope version {body[0]}.")
    kid = body[1 : 1 + KEY_ID_SIZE]
    mac = body[1 + KEY_ID_SIZE : _HEADER_SIZE]
    payload = body[_HEADER_SIZE:]
    if not keyring.verify(kid, body[: 1 + KEY_ID_SIZE] + payload, mac):
        raise SignatureError("The task envelope's signature does not verify under any configured secret.")
    return body[0], payload


def open_envelope(body: bytes, keyring: Keyring) -> bytes:
    """Verifies an envelope of version 1 and returns its payload (see :func:`open_sealed` for references).

    Args:
        body: The request body.
        keyring: Keys that may have signed it.

    Returns:
        The payload, safe to deserialise.

    Raises:
        SignatureError: The body is not an envelope of a known version, or its
            MAC does not verify under a known key.
    """
    return _open(body, keyring, (VERSION,))[1]
