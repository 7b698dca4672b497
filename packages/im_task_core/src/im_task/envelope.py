"""The wire format: a versioned, signed envelope around the serialised call, or around a reference to it.

Layout: one version byte, the 8-byte id of the signing key, the 32-byte
HMAC-SHA256 of everything else (version, key id and what follows the MAC),
then the body proper. Nothing is unpickled unless the MAC verifies, and the
key id is checked before the body is read any further.

=======  =====================================  ============================================
version  body after the MAC                     made by
=======  =====================================  ============================================
1        the serialised call                    im-task before bound envelopes; ``seal()``
2        a :class:`PayloadReference` (JSON)     im-task before bound envelopes
3        a :class:`Binding`, the serialised     every task (:data:`BOUND_VERSION`)
         call
4        a :class:`Binding`, a reference        every task whose payload went to the payload
                                                store (:data:`BOUND_REFERENCE_VERSION`)
=======  =====================================  ============================================

A bound envelope (versions 3 and 4) starts its body with a two-byte length
and the JSON of its :class:`Binding`: the task's URL path, its queue, when
it was made, when it expires, a task id, and the headers given at enqueue.
The endpoint refuses (403, nothing unpickled) a bound envelope presented
under another path or queue, or past its expiry, and gives the task the
signed headers rather than the caller's (see :mod:`im_task.executor`).
Versions 1 and 2 are read while ``accept_unbound_envelopes`` is on, so that
tasks enqueued before an upgrade still run during a rolling deploy.

For a call too large to travel inline the envelope carries a
:class:`PayloadReference`: the name of the payload store, the key of the
stored payload, its SHA-256 and its size. The endpoint verifies the
envelope, loads the payload from the store and checks its hash before
anything is unpickled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from im_task._instances import instance_of
from im_task.errors import SignatureError
from im_task.keys import KEY_ID_SIZE, Keyring
from im_task.names import ProcessSequence

__all__ = [
    "BOUND_REFERENCE_VERSION",
    "BOUND_VERSION",
    "CONTENT_TYPE",
    "MAX_BINDING_SIZE",
    "REFERENCE_VERSION",
    "VERSION",
    "Binding",
    "Opened",
    "PayloadReference",
    "TaskSealer",
    "largest_binding_size",
    "new_task_id",
    "open_envelope",
    "open_sealed",
    "seal",
    "seal_reference",
    "unseal",
]

#: The version byte of an unbound envelope carrying the call (what :func:`seal` makes without a binding).
VERSION = 1
#: The version byte of an unbound envelope carrying a :class:`PayloadReference`.
REFERENCE_VERSION = 2
#: The version byte of a bound envelope carrying the call.
BOUND_VERSION = 3
#: The version byte of a bound envelope carrying a :class:`PayloadReference`.
BOUND_REFERENCE_VERSION = 4
CONTENT_TYPE = "application/octet-stream"
_MAC_SIZE = 32
_HEADER_SIZE = 1 + KEY_ID_SIZE + _MAC_SIZE
_BINDING_LENGTH_SIZE = 2
#: The largest binding an envelope carries, in bytes (its size takes two bytes): 65,535.
MAX_BINDING_SIZE = 2 ** (8 * _BINDING_LENGTH_SIZE) - 1
_MAX_BINDING_SIZE = MAX_BINDING_SIZE
_BINDING_FIELDS = frozenset({"path", "queue", "made", "due", "expires", "id", "headers"})
_REFERENCE_FIELDS = frozenset({"store", "key", "sha256", "size"})


def new_task_id() -> str:
    """A new task id: 24 hex digits or more, unique across processes and time.

    A random prefix of 16 hex digits drawn once per process (again in a
    forked child), then a counter of at least 8 (more after 2**32 ids in one
    process: it never wraps): as unique as ``os.urandom(12).hex()`` made per
    task, without a system call per task. The id need not be secret: it
    travels inside the signed envelope, which no one can alter.
    """
    return _ids.next_name()


_ids = ProcessSequence(8)
#: What a :class:`TaskSealer` keeps for the calls due at once in one second (see ``TaskSealer._split``).
_Second = tuple[float, float, bytes, bytes, bytes, Any, Any]
#: The largest counter a task id writes in 8 hex digits (the sealer's cached bindings hold ids of that width).
_LARGEST_SHORT_COUNTER = 0xFFFFFFFF


def largest_binding_size(path: str, headers: Mapping[str, str]) -> int:
    """The size of the largest binding a task with this path and these headers can have, on any queue.

    With the longest queue name (100 characters), times of 20 digits and a
    task id of 32 hex digits; compare it with :data:`MAX_BINDING_SIZE` to
    refuse, when a task's options are made, headers that no envelope could carry.

    Args:
        path: The URL path the task is POSTed to.
        headers: The task's own headers (``Content-Type`` is left out).
    """
    own = {name: value for name, value in headers.items() if name.lower() != "content-type"}
    longest = 10**19
    return len(Binding(bound_path(path), "q" * 100, longest, longest, "f" * 32, own, longest).to_bytes())


@dataclass(frozen=True)
class Binding:
    """What a task's envelope is bound to, signed with its payload.

    Attributes:
        path: The URL path the task is POSTed to (``/_ah/task/app.tasks/send_mail``); empty for a call
            serialised by :func:`im_task.deferred.serialize`, which App Engine apps POST themselves to any
            URL of the deferred handler, on any queue: only the deferred endpoints run those.
        queue: The short name of the task's queue (empty with an empty path: any queue).
        made: When the envelope was made, in whole seconds since the epoch.
        expires: When it stops being accepted, in whole seconds since the epoch: ``envelope_lifetime``
            after it is due, as the enqueuing process had it.
        task_id: A random id of this task, the same on every delivery of it.
        headers: The task's own headers, given at enqueue; the task sees these, not the caller's.
        due: When the task is due, in whole seconds since the epoch (None: when it was made). The endpoint
            also refuses an envelope past its own ``envelope_lifetime`` after this.
    """

    path: str
    queue: str
    made: int
    expires: int
    task_id: str
    headers: Mapping[str, str] = field(default_factory=dict)
    due: int | None = None

    @property
    def due_time(self) -> int:
        """When the task is due, in whole seconds since the epoch."""
        return self.made if self.due is None else self.due

    @classmethod
    def for_task(
        cls,
        *,
        path: str,
        queue: str,
        headers: Mapping[str, str],
        lifetime: float,
        schedule_time: dt.datetime | None = None,
        now: float | None = None,
    ) -> Binding:
        """The binding of a task about to be enqueued.

        Args:
            path: The URL path the task is POSTed to.
            queue: The queue's short name.
            headers: The task's own headers (``Content-Type`` is left out).
            lifetime: How long after its schedule time (or now) the envelope is accepted, in seconds.
            schedule_time: When the task is due, or None for now.
            now: The current time in seconds since the epoch (``time.time()`` by default).

        Returns:
            The binding, with a fresh task id.
        """
        made = time.time() if now is None else now
        due = made if schedule_time is None else max(made, schedule_time.timestamp())
        own = {name: value for name, value in headers.items() if name.lower() != "content-type"}
        return cls(bound_path(path), queue, int(made), int(due + lifetime) + 1, new_task_id(), own, int(due))

    @classmethod
    def for_serialized(cls, *, lifetime: float, now: float | None = None) -> Binding:
        """The binding of a call serialised for the deferred handler (``deferred.serialize``): any path and queue.

        Args:
            lifetime: How long from now the deferred endpoints accept it, in seconds (``deferred.run`` always does).
            now: The current time in seconds since the epoch (``time.time()`` by default).
        """
        made = time.time() if now is None else now
        return cls("", "", int(made), int(made + lifetime) + 1, new_task_id(), {}, int(made))

    def to_bytes(self) -> bytes:
        """The binding as the JSON a bound envelope carries."""
        fields = {
            "path": self.path,
            "queue": self.queue,
            "made": self.made,
            "due": self.due_time,
            "expires": self.expires,
            "id": self.task_id,
            "headers": dict(self.headers),
        }
        return _json(fields)

    @classmethod
    def from_bytes(cls, data: bytes) -> Binding:
        """Reads the JSON of :meth:`to_bytes` (from a verified envelope).

        Raises:
            ValueError: The data is not such a binding.
        """
        fields = _json_object(data, _BINDING_FIELDS, "not an envelope binding")
        path, queue, made, due, expires, task_id, headers = (
            fields["path"],
            fields["queue"],
            fields["made"],
            fields["due"],
            fields["expires"],
            fields["id"],
            fields["headers"],
        )
        # JSON gives exact types (a bool is no int here), so ``type() is`` is the whole check
        if not (type(path) is str and type(queue) is str and type(task_id) is str):
            raise ValueError("not an envelope binding")
        if not (type(made) is int and type(due) is int and type(expires) is int and min(made, due, expires) >= 0):
            raise ValueError("not an envelope binding")
        if type(headers) is not dict or not all(type(v) is str for v in headers.values()):
            raise ValueError("not an envelope binding")
        fields = {"path": path, "queue": queue, "made": made, "expires": expires, "task_id": task_id}
        fields.update(headers=headers, due=due)
        return instance_of(cls, fields)  # every request opens one

    def refusal(
        self,
        *,
        path: str,
        queue: str,
        now: float | None = None,
        deferred: bool = False,
        lifetime: float | None = None,
    ) -> str | None:
        """Why this envelope may not run as a request to ``path`` from ``queue``, or None when it may.

        The path must be the bound path exactly, mount prefix (``SCRIPT_NAME``) included: ``path`` is the
        request's path as the server decoded it (once), the bound one is percent-decoded once to compare.
        A serialised call (empty path) runs only at a deferred endpoint, under any path.

        Args:
            path: The request's whole path, decoded (``SCRIPT_NAME`` + ``PATH_INFO`` as text).
            queue: The queue's short name, from the task headers.
            now: The current time in seconds since the epoch (``time.time()`` by default).
            deferred: Whether the request came to a deferred endpoint, which also runs serialised calls.
            lifetime: The endpoint's own ``envelope_lifetime``: the envelope is refused past it after the
                task was due too, so shortening it at the endpoint applies to envelopes made before.
        """
        if not self.path:
            if not deferred:
                return "the envelope holds a call made by deferred.serialize(), which only the deferred endpoints run"
        else:
            if unquote(self.path, errors="strict") != path:
                return f"the envelope is bound to the path {self.path!r}, not {path!r}"
            if queue != self.queue:
                return f"the envelope is bound to the queue {self.queue!r}, not {queue!r}"
        moment = time.time() if now is None else now
        if moment > self.expires:
            expired = dt.datetime.fromtimestamp(self.expires, dt.timezone.utc).isoformat()
            return f"the envelope expired at {expired} (envelope_lifetime when it was made)"
        if lifetime is not None and moment > self.due_time + lifetime:
            return f"the envelope is older than this endpoint's envelope_lifetime ({lifetime:.0f} s) after it was due"
        return None


def bound_path(url: str) -> str:
    """The part of a task's URL its envelope is bound to: the path, without a query string."""
    return url.partition("?")[0]


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Opened:
    """A verified envelope: its payload (or the reference to it), and its binding.

    Attributes:
        payload: The serialised call, safe to deserialise; or the verified reference to a stored one.
        binding: What the envelope is bound to; None for an unbound envelope (versions 1 and 2).
    """

    payload: bytes | PayloadReference
    binding: Binding | None


def seal(payload: bytes, keyring: Keyring, binding: Binding | None = None) -> bytes:
    """Signs a payload into an envelope: bound to a task when given a binding, else unbound (version 1).

    Args:
        payload: The serialised call.
        keyring: Keys; the first one signs.
        binding: What the envelope is bound to (every task's envelope has one).

    Returns:
        The envelope bytes.
    """
    if binding is None:
        return _seal(VERSION, payload, keyring)
    return _seal(BOUND_VERSION, _bound(binding, payload), keyring)


class TaskSealer:
    """Seals the calls of one task function for one queue, the constant part of their binding made once.

    ``sealer.seal(payload, now=now)`` is ``seal(payload, keyring, Binding.for_task(...))`` byte for byte,
    without the JSON encoder and the dataclass per call: the binding's path,
    queue and headers are encoded when the sealer is made; the times when
    the second changes (for a call due now; per call for a later one); only
    the task id's counter per call.

    Args:
        keyring: Keys; the first one signs.
        path: The URL path the task is POSTed to.
        queue: The queue's short name.
        headers: The task's own headers (``Content-Type`` is left out).
        lifetime: How long after its schedule time (or now) an envelope is accepted, in seconds.
        around: What every payload starts and ends with, for payloads given without it (a
            :class:`~im_task.serialization.CallTemplate`'s constant parts): ``seal(middle)`` seals
            ``start + middle + end``, without joining them first.
    """

    __slots__ = ("_end", "_head", "_keyring", "_lifetime", "_prefix", "_second", "_start", "_tail", "_template")

    def __init__(
        self,
        keyring: Keyring,
        *,
        path: str,
        queue: str,
        headers: Mapping[str, str],
        lifetime: float,
        around: tuple[bytes, bytes] = (b"", b""),
    ) -> None:
        self._start, self._end = around
        own = {name: value for name, value in headers.items() if name.lower() != "content-type"}
        self._head = b'{"due":%d,"expires":%d,"headers":' + _escaped(_json(own)) + b',"id":"'
        self._tail = b'","made":%d,"path":' + _escaped(_json(bound_path(path)))
        self._tail += b',"queue":' + _escaped(_json(queue)) + b"}"
        self._template = self._head + b"%s%08x" + self._tail
        self._keyring, self._lifetime = keyring, lifetime
        self._prefix = bytes([BOUND_VERSION]) + keyring.signing_id
        # For the calls due at once from one time to another (whose binding has the same times): those times
        # (from, to), the id prefix, the length and the binding up to the id's counter, the rest after it
        # (and the payload's start), the signing key's inner hash with the envelope up to the counter read,
        # and its outer hash (see _split).
        self._second: _Second = (1.0, 0.0, b"", b"", b"", *keyring.signer().states())

    def seal(self, payload: bytes, *, now: float, due: float | None = None) -> bytes:
        """The envelope of one call (version :data:`BOUND_VERSION`).

        Args:
            payload: The serialised call (less the start and end the sealer was made ``around``).
            now: The current time in seconds since the epoch.
            due: When the task is due, in seconds since the epoch, or None for now.

        Returns:
            The envelope bytes.
        """
        if due is None or due <= now:
            return self.seal_now(payload, now)
        return self._seal_anew(payload, now, due, next(_ids.counter))

    def seal_now(self, payload: bytes, now: float) -> bytes:
        """The envelope of one call due at once: ``seal(payload, now=now)``, on the path of every common call.

        Args:
            payload: The serialised call (less the start and end the sealer was made ``around``).
            now: The current time in seconds since the epoch.

        Returns:
            The envelope bytes.
        """
        ids = _ids  # the task id, as new_task_id() makes it
        counter = next(ids.counter)
        if counter > _LARGEST_SHORT_COUNTER:
            return self._seal_anew(payload, now, None, counter)
        since, until, id_prefix, head, tail, inner, outer = self._second
        if not since <= now < until or id_prefix is not ids.prefix_bytes:
            since, until, id_prefix, head, tail, inner, outer = self._second = self._split(now, ids.prefix_bytes)
        rest = b"%08x%s" % (counter, tail)
        # The HMAC, as the keyring's signer makes it, without a call and a loop over the parts.
        end = self._end
        mac = inner.copy()
        mac.update(rest)
        mac.update(payload)
        mac.update(end)
        signed = outer.copy()
        signed.update(mac.digest())
        return b"".join((self._prefix, signed.digest(), head, rest, payload, end))

    def _seal_anew(self, payload: bytes, now: float, due: float | None, counter: int) -> bytes:
        """The envelope of one call, its binding made for it alone (a later call's, or an id's wider counter)."""
        due_time = now if due is None or due < now else due
        expires = int(due_time + self._lifetime) + 1
        data = self._template % (int(due_time), expires, _ids.prefix_bytes, counter, int(now))
        size = len(data)
        if size > _MAX_BINDING_SIZE:
            raise ValueError(f"The task's binding is {size} bytes; its headers must take under 64 KiB.")
        binding = size.to_bytes(_BINDING_LENGTH_SIZE, "big") + data
        prefix = self._prefix
        start, end = self._start, self._end
        mac = self._keyring.sign(prefix, binding, start, payload, end)
        return b"".join((prefix, mac, binding, start, payload, end))

    def _split(self, now: float, id_prefix: bytes) -> _Second:
        """The binding of the calls due at once from ``now`` on, for as long as its times stay the same."""
        made, expires = int(now), int(now + self._lifetime) + 1
        head = self._head % (made, expires) + id_prefix
        tail = self._tail % made
        size = len(head) + 8 + len(tail)
        if size > _MAX_BINDING_SIZE:
            raise ValueError(f"The task's binding is {size} bytes; its headers must take under 64 KiB.")
        head = size.to_bytes(_BINDING_LENGTH_SIZE, "big") + head
        # Until made or expires would change: int() of now, and of now + lifetime (monotonic in now), stays
        # the same from now until the next whole second of either, less a millisecond (far more than the
        # rounding of the sum: its times are whole seconds, its error a fraction of a microsecond). Before
        # the epoch int() rounds up, not down: such a binding is kept for its own call only.
        end = min(made + 1.0, expires - self._lifetime - 0.001 - abs(expires) * 1e-12) if now >= 0 else now
        inner, outer = self._keyring.signer(self._prefix, head).states()
        return (now, end, id_prefix, head, tail + self._start, inner, outer)

    def binding_of(self, envelope: bytes) -> Binding:
        """The binding of an envelope this sealer made (to seal a payload reference in its stead)."""
        size = int.from_bytes(envelope[_HEADER_SIZE : _HEADER_SIZE + _BINDING_LENGTH_SIZE], "big")
        start = _HEADER_SIZE + _BINDING_LENGTH_SIZE
        return Binding.from_bytes(envelope[start : start + size])


def _json(value: object) -> bytes:
    """``value`` as compact JSON with sorted keys: the one encoding the signed parts use."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _json_object(data: bytes, keys: frozenset[str], error: str) -> dict[str, Any]:
    """Reads the JSON of :func:`_json`: an object with exactly ``keys``.

    Raises:
        ValueError: The data is not JSON, or (saying ``error``) not such an object.
    """
    text = data.decode()
    try:  # the C scanner json.loads ends in, without its two Python frames (every request reads a binding)
        fields, end = _scan_json(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):  # not one JSON value alone: json.loads says why (or reads it, around white space)
        fields = json.loads(text)
    if type(fields) is not dict or fields.keys() != keys:
        raise ValueError(error)
    return fields


#: The scanner json.loads uses (set by JSONDecoder.__init__, which the type stubs do not say).
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _escaped(data: bytes) -> bytes:
    """``data`` as a literal part of a ``%`` template."""
    return data.replace(b"%", b"%%")


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
        return _json({"store": self.store, "key": self.key, "sha256": self.sha256, "size": self.size})

    @classmethod
    def from_bytes(cls, data: bytes) -> PayloadReference:
        """Reads the JSON of :meth:`to_bytes` (from a verified envelope).

        Raises:
            ValueError: The data is not such a reference.
        """
        fields = _json_object(data, _REFERENCE_FIELDS, "not a payload reference")
        store, key, sha256, size = fields["store"], fields["key"], fields["sha256"], fields["size"]
        if not (isinstance(store, str) and isinstance(key, str) and isinstance(sha256, str) and len(sha256) == 64):
            raise ValueError("not a payload reference")
        if not _whole(size):
            raise ValueError("not a payload reference")
        return cls(store, key, sha256, size)


def seal_reference(reference: PayloadReference, keyring: Keyring, binding: Binding | None = None) -> bytes:
    """Signs a payload reference into an envelope, bound to a task when given a binding.

    Args:
        reference: Where the payload is stored.
        keyring: Keys; the first one signs.
        binding: What the envelope is bound to (every task's envelope has one).

    Returns:
        The envelope bytes (version :data:`BOUND_REFERENCE_VERSION`, or :data:`REFERENCE_VERSION` unbound).
    """
    if not isinstance(reference, PayloadReference):
        raise TypeError(f"seal_reference() takes a PayloadReference, not {type(reference).__name__}.")
    if binding is None:
        return _seal(REFERENCE_VERSION, reference.to_bytes(), keyring)
    return _seal(BOUND_REFERENCE_VERSION, _bound(binding, reference.to_bytes()), keyring)


def _bound(binding: Binding, payload: bytes) -> bytes:
    if not isinstance(binding, Binding):
        raise TypeError(f"seal() takes a Binding, not {type(binding).__name__}.")
    data = binding.to_bytes()
    if len(data) > _MAX_BINDING_SIZE:
        raise ValueError(f"The task's binding is {len(data)} bytes; its headers must take under 64 KiB.")
    return len(data).to_bytes(_BINDING_LENGTH_SIZE, "big") + data + payload


def unseal(body: bytes, keyring: Keyring) -> Opened:
    """Verifies an envelope of any version: its payload or reference, and its binding.

    Args:
        body: The request body.
        keyring: Keys that may have signed it.

    Returns:
        What the envelope holds (check :meth:`Binding.refusal` before running a bound one).

    Raises:
        SignatureError: The body is not an envelope of a known version, its MAC does not verify under a
            known key, or a verified binding or reference is malformed.
    """
    version, rest = _open(body, keyring, (VERSION, REFERENCE_VERSION, BOUND_VERSION, BOUND_REFERENCE_VERSION))
    binding = None
    if version in (BOUND_VERSION, BOUND_REFERENCE_VERSION):
        size = int.from_bytes(rest[:_BINDING_LENGTH_SIZE], "big")
        start = _BINDING_LENGTH_SIZE + size
        if len(rest) < start:
            raise SignatureError("The task envelope holds a truncated binding.")
        try:
            binding = Binding.from_bytes(bytes(rest[_BINDING_LENGTH_SIZE:start]))
        except ValueError:
            raise SignatureError("The task envelope holds a malformed binding.") from None
        rest = rest[start:]
    if version in (VERSION, BOUND_VERSION):
        return Opened(bytes(rest), binding)
    try:
        return Opened(PayloadReference.from_bytes(bytes(rest)), binding)
    except ValueError:
        raise SignatureError("The task envelope holds a malformed payload reference.") from None


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
    return unseal(body, keyring).payload


def _seal(version: int, payload: bytes, keyring: Keyring) -> bytes:
    prefix = bytes([version]) + keyring.signing_id
    return prefix + keyring.sign(prefix, payload) + payload


def _open(body: bytes, keyring: Keyring, versions: tuple[int, ...]) -> tuple[int, memoryview]:
    """Checks the version and the key id, then the MAC, without copying the body; returns what follows the MAC."""
    if len(body) < _HEADER_SIZE:
        raise SignatureError("The body is too short to be a task envelope.")
    if body[0] not in versions:
        raise SignatureError(f"Unknown envelope version {body[0]}.")
    kid = body[1 : 1 + KEY_ID_SIZE]
    if not keyring.knows(kid):
        raise SignatureError(
            "The task envelope's signature does not verify under any configured secret (it names a key none has)."
        )
    view = memoryview(body)
    rest = view[_HEADER_SIZE:]
    if not keyring.verify(kid, view[1 + KEY_ID_SIZE : _HEADER_SIZE], view[: 1 + KEY_ID_SIZE], rest):
        raise SignatureError("The task envelope's signature does not verify under any configured secret.")
    return body[0], rest


def open_envelope(body: bytes, keyring: Keyring) -> bytes:
    """Verifies an envelope carrying the call inline and returns its payload (see :func:`unseal` for the rest).

    Args:
        body: The request body.
        keyring: Keys that may have signed it.

    Returns:
        The payload, safe to deserialise.

    Raises:
        SignatureError: The body is not an envelope of a known version, or its
            MAC does not verify under a known key.
    """
    opened = unseal(body, keyring)
    if not isinstance(opened.payload, bytes):
        raise SignatureError("The task envelope holds a payload reference, not the call: open it with unseal().")
    return opened.payload
