"""Signing keys: the keyring that signs and verifies envelopes, and the local secret."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from im_task.errors import ConfigurationError

__all__ = ["KEY_ID_SIZE", "MIN_SECRET_BYTES", "Keyring", "load_or_create_local_secret"]

KEY_ID_SIZE = 8
MIN_SECRET_BYTES = 16
LOCAL_SECRET_FILE = "secret"


class Keyring:
    """HMAC-SHA256 keys: the first signs, every one verifies (for rotation).

    Each key is known by an id derived from it, carried in the envelope, so a
    verifier finds the right key without trying them all and without the id
    revealing anything of the key.
    """

    __slots__ = ("_by_id", "signing_id", "signing_key")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigurationError("A keyring needs at least one secret.")
        self._by_id = {key_id(k): k for k in keys}
        self.signing_key = keys[0]
        self.signing_id = key_id(keys[0])

    def sign(self, message: bytes) -> bytes:
        """The HMAC-SHA256 of ``message`` under the signing key."""
        return hmac.new(self.signing_key, message, hashlib.sha256).digest()

    def verify(self, kid: bytes, message: bytes, mac: bytes) -> bool:
        """Whether ``mac`` is the HMAC of ``message`` under the key with id ``kid``."""
        key = self._by_id.get(kid)
        if key is None:
            return False
        return hmac.compare_digest(hmac.new(key, message, hashlib.sha256).digest(), mac)

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"<Keyring of {len(self)} key(s)>"


def key_id(key: bytes) -> bytes:
    """A short, non-secret identifier of a key."""
    return hashlib.sha256(b"im-task key id\x00" + key).digest()[:KEY_ID_SIZE]


def coerce_secret(value: str | bytes, *, source: str) -> bytes:
    """Turns a configured secret into key bytes, refusing weak ones.

    Args:
        value: The secret as text or bytes.
        source: Where it came from, for the error message.

    Returns:
        The key bytes.

    Raises:
        ConfigurationError: For a secret of the wrong type or under 16 bytes.
    """
    if isinstance(value, str):
        raw = value.encode("utf-8")
    elif isinstance(value, bytes):
        raw = value
    else:
        raise ConfigurationError(f"{source}: a secret is a str or bytes, not {type(value).__name__}.")
    if len(raw) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{source}: a secret must be at least {MIN_SECRET_BYTES} bytes long; "
            'make one with: python -c "import secrets; print(secrets.token_hex(32))"'
        )
    return raw


def load_or_create_local_secret(data_dir: Path) -> bytes:
    """The development secret kept in the local data directory, made on first use.

    The file is created atomically with mode 0600, so concurrent processes
    agree on one secret.

    Args:
        data_dir: The local data directory (``.im_task`` by default).

    Returns:
        The secret's bytes.
    """
    path = data_dir / LOCAL_SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    candidate = data_dir / f".{LOCAL_SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    try:
        os.link(candidate, path)  # fails if another process won the race
    except FileExistsError:
        pass
    finally:
        candidate.unlink()
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    value = path.read_text(encoding="utf-8").strip()
    return coerce_secret(value, source=str(path))
