"""Signing keys: the keyring that signs and verifies envelopes, the rules a secret must meet, and the local secret.

A secret is at least 32 bytes long and not mostly repetition (see
:func:`coerce_secret`); make one with
``python -c "import secrets; print(secrets.token_hex(32))"``. The local
(development) secret is made in the data directory on first use and read
back only from a regular file of the current user that no one else may read
or write (see :func:`load_or_create_local_secret`).

Example:
    >>> from im_task.keys import Keyring, coerce_secret
    >>> keyring = Keyring([coerce_secret("3f9c2b7e1d0a8c4f6b5e2d9a7c1f3e8b", source="example")])
    >>> keyring
    <Keyring of 1 key(s)>
    >>> coerce_secret("changeme-changeme-changeme-changeme", source="example")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    im_task.errors.ConfigurationError: example: this secret is mostly repetition (...
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import math
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from im_task.datadir import SECRET_FILE, make_data_dir, owned_by_me
from im_task.errors import ConfigurationError

__all__ = [
    "KEY_ID_SIZE",
    "MAKE_SECRET",
    "MIN_SECRET_BYTES",
    "Keyring",
    "Stamp",
    "coerce_secret",
    "key_id",
    "load_or_create_local_secret",
    "read_stamp",
    "stamp_time",
]

KEY_ID_SIZE = 8
#: The shortest secret accepted, in bytes (of its UTF-8 encoding, for text).
MIN_SECRET_BYTES = 32
#: The fewest different byte values a secret may have.
MIN_DISTINCT_BYTES = 8
#: The fewest different 4-byte runs a secret may have (a secret that repeats a short part has few).
MIN_DISTINCT_RUNS = 20
#: The command that makes a good secret, quoted in every refusal.
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_hex(32))"'
LOCAL_SECRET_FILE = SECRET_FILE
_MAX_SECRET_FILE = 64 * 1024


class Keyring:
    """HMAC-SHA256 keys: the first signs, every one verifies (for rotation).

    Each key is known by an id derived from it, carried in the envelope, so a
    verifier finds the right key without trying them all and without the id
    revealing anything of the key.
    """

    __slots__ = ("_by_id", "_hmacs", "_signing_hmac", "signing_id", "signing_key")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigurationError("A keyring needs at least one secret.")
        self._by_id = {key_id(k): k for k in keys}
        self._hmacs = {kid: _Hmac(k) for kid, k in self._by_id.items()}
        self.signing_key = keys[0]
        self.signing_id = key_id(keys[0])
        self._signing_hmac = self._hmacs[self.signing_id]

    def sign(self, *message: bytes | memoryview) -> bytes:
        """The HMAC-SHA256, under the signing key, of the message given in parts (joined, never copied)."""
        return self._signing_hmac.sign(*message)

    def signer(self, *start: bytes | memoryview) -> _Hmac:
        """The signing key's HMAC with the first parts of a message read: for messages that start alike.

        ``keyring.signer(a).sign(b, c) == keyring.sign(a, b, c)``; the
        common start is hashed once, not once per message.
        """
        return self._signing_hmac.after(start)

    def stamp(self, issued: str, *message: bytes | memoryview) -> str:
        """A signed time, ``<seconds>.<fraction>.<key id>.<HMAC>`` (hex), as :func:`read_stamp` reads it.

        Args:
            issued: The time as :func:`stamp_time` writes it.
            *message: What is signed under the signing key (it should include ``issued``).
        """
        return f"{issued}.{self.signing_id.hex()}.{self.sign(*message).hex()}"

    def knows(self, kid: bytes | memoryview) -> bool:
        """Whether a key of this keyring has the id ``kid`` (cheap: check it before reading a body further)."""
        return bytes(kid) in self._by_id

    def verify(self, kid: bytes | memoryview, mac: bytes | memoryview, *message: bytes | memoryview) -> bool:
        """Whether ``mac`` is the HMAC of the message, given in parts, under the key with id ``kid``."""
        keyed = self._hmacs.get(bytes(kid))
        if keyed is None:
            return False
        return hmac.compare_digest(keyed.sign(*message), mac)

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"<Keyring of {len(self)} key(s)>"


class Stamp(NamedTuple):
    """A signed time read back by :func:`read_stamp` (the signature still to be verified).

    Attributes:
        issued: The time as written, which the signed message includes.
        moment: That time, seconds since the epoch.
        kid: The id of the key that signed it.
        mac: The HMAC-SHA256.
    """

    issued: str
    moment: float
    kid: bytes
    mac: bytes


def stamp_time(moment: float) -> str:
    """A time as a stamp writes it: seconds since the epoch with 6 decimals."""
    return f"{moment:.6f}"


def read_stamp(value: object) -> Stamp | None:
    """Reads ``<seconds>.<fraction>.<key id>.<HMAC>`` (hex), or None when it is not one (garbled, not finite).

    Only the form is checked: verify ``stamp.mac`` with :meth:`Keyring.verify` over the message signed.
    """
    if not isinstance(value, str) or value.count(".") != 3:
        return None
    seconds, fraction, kid, mac = value.split(".")
    issued = f"{seconds}.{fraction}"
    try:
        moment = float(issued)
        kid_bytes, mac_bytes = binascii.unhexlify(kid), binascii.unhexlify(mac)
    except (ValueError, binascii.Error):
        return None
    return Stamp(issued, moment, kid_bytes, mac_bytes) if math.isfinite(moment) else None


class _Hmac:
    """HMAC-SHA256 under one key (RFC 2104), with the keyed inner and outer hashes made once.

    The same digest as ``hmac.new(key, message, "sha256")`` at about half its
    cost per message: each message copies the two keyed SHA-256 states
    instead of deriving them from the key again.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in padded))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in padded))

    def sign(self, *parts: bytes | memoryview) -> bytes:
        """The HMAC of what this one has read (see :meth:`after`), then of ``parts``."""
        inner = self._inner.copy()
        for part in parts:
            inner.update(part)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def states(self) -> tuple[Any, Any]:
        """The keyed inner hash, with what this one has read, and the keyed outer hash.

        For a caller that finishes the HMAC itself, on a path where a call of :meth:`sign` costs too much:
        ``inner = states[0].copy()``, ``inner.update(...)``, then ``outer = states[1].copy()``,
        ``outer.update(inner.digest())``, and ``outer.digest()`` is the HMAC. Copy them; never update them.
        """
        return self._inner, self._outer

    def after(self, parts: tuple[bytes | memoryview, ...]) -> _Hmac:
        """This HMAC with ``parts`` read: the same digests, for messages that start with them."""
        hashed = _Hmac.__new__(_Hmac)
        hashed._inner, hashed._outer = self._inner.copy(), self._outer
        for part in parts:
            hashed._inner.update(part)
        return hashed


def key_id(key: bytes) -> bytes:
    """A short, non-secret identifier of a key: 8 bytes of SHA-256 of a fixed prefix and the key.

    Anyone holding an envelope can test a guessed key against its id (and
    as well against its signature, which the id adds nothing to): so the
    id is only as strong as the secret behind it. That is why
    :func:`coerce_secret` refuses secrets under 32 bytes or of little
    variety: a secret made as :data:`MAKE_SECRET` says has 256 bits that
    no offline search can cover. The derivation cannot change without
    orphaning every envelope in flight, so it stays as it is.

    Args:
        key: The key's bytes.

    Returns:
        :data:`KEY_ID_SIZE` bytes.
    """
    return hashlib.sha256(b"im-task key id\x00" + key).digest()[:KEY_ID_SIZE]


def coerce_secret(value: str | bytes, *, source: str) -> bytes:
    """Turns a configured secret into key bytes, refusing weak ones.

    A secret must be at least :data:`MIN_SECRET_BYTES` (32) bytes long, hold
    at least :data:`MIN_DISTINCT_BYTES` (8) different characters, and not be
    mostly repetition: at least :data:`MIN_DISTINCT_RUNS` (20) of its 4-byte
    runs must differ (``"changeme-changeme-changeme-changeme"`` has 9). These
    rules catch the careless secret, not every predictable one: make secrets
    with :data:`MAKE_SECRET`. Refusals never quote the secret.

    Args:
        value: The secret as text (taken as UTF-8) or bytes.
        source: Where it came from, for the error message.

    Returns:
        The key bytes.

    Raises:
        ConfigurationError: For a secret of the wrong type, too short, or too predictable.
    """
    if isinstance(value, str):
        raw = value.encode("utf-8")
    elif isinstance(value, bytes):
        raw = value
    else:
        raise ConfigurationError(f"{source}: a secret is a str or bytes, not {type(value).__name__}.")
    if len(raw) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{source}: a secret must be at least {MIN_SECRET_BYTES} bytes long (this one has {len(raw)}); "
            f"make one with: {MAKE_SECRET}"
        )
    distinct = len(set(raw))
    if distinct < MIN_DISTINCT_BYTES:
        raise ConfigurationError(
            f"{source}: this secret has too little variety (only {distinct} distinct byte values; at least "
            f"{MIN_DISTINCT_BYTES} are needed), so it is easy to guess; make a random one with: {MAKE_SECRET}"
        )
    runs = len({raw[i : i + 4] for i in range(len(raw) - 3)})
    if runs < MIN_DISTINCT_RUNS:
        raise ConfigurationError(
            f"{source}: this secret is mostly repetition ({runs} different 4-byte runs in {len(raw)} bytes; at "
            f"least {MIN_DISTINCT_RUNS} are needed), so it is easy to guess; make a random one with: {MAKE_SECRET}"
        )
    return raw


def load_or_create_local_secret(data_dir: Path) -> bytes:
    """The development secret kept in the local data directory, made on first use.

    The data directory is made (or tightened) by
    :func:`~im_task.datadir.make_data_dir`: ``0700``, with a ``.gitignore``.
    The file is created atomically with mode 0600, so concurrent processes
    agree on one secret. It is read back without following a symbolic link,
    and refused unless it is a regular file of the current user that no one
    else may read or write (checked on the opened file, so it cannot be
    swapped between the check and the read).

    Args:
        data_dir: The local data directory (``.im_task`` by default).

    Returns:
        The secret's bytes.

    Raises:
        ConfigurationError: The directory cannot be made, or the secret file
            is unsafe or unreadable; the message says how to fix it.
    """
    if not isinstance(data_dir, Path):
        raise ConfigurationError(f"load_or_create_local_secret() takes a pathlib.Path, not {type(data_dir).__name__}.")
    make_data_dir(data_dir)
    path = data_dir / LOCAL_SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    candidate = data_dir / f".{LOCAL_SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
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
    """Reads the local secret from a file only the current user can read or write.

    Raises:
        FileNotFoundError: There is no such file (nor a symbolic link by that name).
        ConfigurationError: The file is unsafe or unreadable.
    """
    remedy = f"delete it to have a new one made (tasks already queued under the old one will be refused: {path})"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if os.path.islink(path):  # a dangling link where O_NOFOLLOW is missing
            raise _symlink_error(path) from None
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise _symlink_error(path) from None
        raise ConfigurationError(
            f"The local secret {path} cannot be read ({exc.strerror or exc}); fix its permissions, or {remedy}."
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(f"The local secret {path} is not a regular file; {remedy}.")
        if not owned_by_me(info):
            raise ConfigurationError(
                f"The local secret {path} belongs to another user (uid {info.st_uid}): whoever wrote it could "
                f"forge tasks. Check who did, then {remedy}; or configure a secret (IM_TASK_SECRET)."
            )
        if info.st_mode & 0o077:
            raise ConfigurationError(
                f"The local secret {path} can be read or written by other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}): anyone who knows it can forge tasks. Fix it with "
                f"`chmod 600 {path}` if no one else could have written it; otherwise {remedy}."
            )
        raw = os.read(fd, _MAX_SECRET_FILE)
    finally:
        os.close(fd)
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"The local secret {path} is not text; {remedy}.") from None
    return coerce_secret(value, source=str(path))


def _symlink_error(path: Path) -> ConfigurationError:
    return ConfigurationError(
        f"The local secret {path} is a symbolic link, which im-task does not follow: it could point at a secret "
        f"someone else knows. Delete it (rm {path}) to have a new secret made there, or configure a secret "
        f"(IM_TASK_SECRET)."
    )
