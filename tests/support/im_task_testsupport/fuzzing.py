"""Fuzzing the endpoints: genuine envelopes to mutate, hostile requests built from them, and the invariants.

One module serves the hypothesis properties of the normal test run
(``packages/im_task_core/tests/test_fuzz_endpoint.py``) and the long
coverage-guided run of ``nox -s fuzz`` (``tests/fuzz/endpoint_fuzz.py``):

- :func:`make_seeds` makes genuine envelopes of every version through the
  real API (a :class:`~im_task.transports.RecordingTransport` enqueue for
  versions 3 and 4, :func:`~im_task.envelope.seal` for 1,
  :func:`~im_task.envelope.seal_reference` for 2, an expired one, a
  ``deferred.serialize`` call) and hostile ones (signed with another secret, a
  raw pickle). Every call carries a :class:`~im_task_testsupport.sink.Tripwire`,
  so whatever unpickles it leaves a mark in the sink.
- :func:`build_case` turns a source of choices (hypothesis' ``data.draw`` or
  atheris' ``FuzzedDataProvider``, behind :class:`Choices`) into one request:
  a seed, bit-flipped, truncated, extended, re-keyed or replaced; an odd
  method and path; task headers of both families, missing, duplicated or
  garbage, with CR/LF in names; a body as bytes or as a stream that lies
  about its length or breaks.
- :func:`run_case` sends it to ``im_task.executor.handle_request`` or to
  ``im_task.endpoints.handle_request`` (so the deferred endpoints are
  fuzzed too), watching ``pickle.loads`` and the log, and :func:`violations`
  says which invariant it broke, if any.

The invariants: nothing is unpickled unless the body is a genuine envelope,
unexpired, presented under its own path and queue (or, unbound, while
``accept_unbound_envelopes`` is on); no status outside :data:`STATUSES`, a
body that is not genuine gets a refusal, and no 500 unless the task itself
raised; no traceback, secret or key bytes in any response or log record; a
refused request logs at WARNING at most, without a traceback, and no raw CR
or LF.
"""

from __future__ import annotations

import base64
import io
import logging
import pickle
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, TypeVar
from urllib.parse import quote, unquote

from hypothesis import strategies as st

import im_task.endpoints
import im_task.executor
import im_task.serialization
from im_task import configure, deferred, task
from im_task.config import get_keyring
from im_task.envelope import Binding, seal, seal_reference
from im_task.executor import TaskResponse
from im_task.headers import APPENGINE, CLOUDTASKS, Headers, TaskHeaders
from im_task.keys import KEY_ID_SIZE, Keyring
from im_task.serialization import TaskCall, dumps_call
from im_task.stores.base import store_payload
from im_task.transports import RecordingTransport
from im_task_testsupport import sink

__all__ = [
    "FUZZ_SECRET",
    "OTHER_SECRETS",
    "STATUSES",
    "Case",
    "Choices",
    "DrawnChoices",
    "Outcome",
    "Seed",
    "build_case",
    "fuzz_target",
    "make_seeds",
    "run_case",
    "secret_markers",
    "violations",
]

#: The secret the fuzzed endpoint is configured with (long and varied, as the secret rules want).
FUZZ_SECRET = "fuzz-secret-7Qx2Lm9Vr4Tb8Kd1Hs6Jw3Np5Zc0Yg"
#: Secrets an attacker might sign with instead; none of them is configured.
OTHER_SECRETS = (
    "another-app-secret-4Fh8Rt2Wq6Ez1Ux9Kp3Mb7Nv5",
    "test-secret-0123456789abcdefghijklmn",
    "fuzz-secret-7Qx2Lm9Vr4Tb8Kd1Hs6Jw3Np5Zc0Yh",
)
#: Every status the endpoints may answer.
STATUSES = frozenset({200, 400, 403, 405, 408, 413, 500})
#: What a body that is not a genuine envelope may get: a refusal.
REFUSALS = frozenset({400, 403, 405, 413})
TASK_PATH_PREFIX = "/_ah/task/"
LARGE_ARGUMENT = "x" * 120_000  # over the inline limit: the payload goes to the payload store (version 4)
DAY = 24 * 3600

T = TypeVar("T")


@task(queue="mail", headers={"X-Tenant": "acme"}, includeheaders=True)
def fuzz_target(tripwire: Any, mode: str, headers: Any = None) -> None:
    """The task the seeds call: records that it ran, and raises when ``mode`` says so."""
    sink.record(("ran", mode))
    if mode == "raise":
        raise RuntimeError("the fuzz target raised, as it was asked to")


@dataclass(frozen=True)
class Seed:
    """An envelope to mutate.

    Attributes:
        name: What it is, for reports.
        body: Its bytes.
        genuine: Whether it is signed with the configured secret (False: an attacker's).
        path: The path it is bound to; "" for a ``deferred.serialize`` call, None when unbound.
        queue: The queue it is bound to.
        expired: Whether its binding has expired.
    """

    name: str
    body: bytes
    genuine: bool
    path: str | None = None
    queue: str = ""
    expired: bool = False


def make_seeds() -> list[Seed]:
    """Makes the seeds under the configuration in force (its secret and data directory), through the real API.

    Installs a :class:`~im_task.transports.RecordingTransport` for a moment to enqueue the bound ones.
    """
    keyring = get_keyring()
    recorder = RecordingTransport()
    configure(transport=recorder)
    try:
        fuzz_target(sink.Tripwire(), "ok")
        fuzz_target.using(queue="default")(sink.Tripwire(), "raise")
        fuzz_target(sink.Tripwire(), LARGE_ARGUMENT)
        deferred.defer(sink.record, sink.Tripwire(), _queue="default")
        requests = list(recorder.requests)
    finally:
        configure(transport=None)
        recorder.close()
    seeds = [Seed(f"v{r.body[0]} {r.url} ({len(r.body)} bytes)", r.body, True, r.url, r.queue) for r in requests]
    call = dumps_call(TaskCall(fuzz_target, (sink.Tripwire(), "unbound")))
    seeds.append(Seed("v1 unbound", seal(call, keyring), True, queue="default"))
    reference = store_payload(call, in_transaction=False)
    seeds.append(Seed("v2 unbound reference", seal_reference(reference, keyring), True, queue="default"))
    past = time.time() - 3 * DAY
    expired = Binding.for_task(path=requests[0].url, queue="mail", headers={}, lifetime=DAY, now=past)
    seeds.append(Seed("v3 expired", seal(call, keyring, expired), True, requests[0].url, "mail", expired=True))
    seeds.append(Seed("v3 deferred.serialize", deferred.serialize(sink.record, sink.Tripwire()), True, "", "default"))
    for secret in OTHER_SECRETS:
        other = Keyring([secret.encode()])
        binding = Binding.for_task(path=requests[0].url, queue="mail", headers={}, lifetime=DAY)
        seeds.append(Seed("v3 signed with another secret", seal(call, other, binding), False))
    seeds.append(Seed("raw pickle", pickle.dumps((sink.record, (sink.Tripwire(),), {})), False))
    return seeds


class Choices(Protocol):
    """Where a case's choices come from: hypothesis' draws, or the bytes atheris mutates."""

    def integer(self, low: int, high: int) -> int:
        """A whole number in ``[low, high]``."""
        ...

    def raw(self, most: int) -> bytes:
        """Up to ``most`` bytes."""
        ...

    def text(self, most: int) -> str:
        """Up to ``most`` characters, any of Unicode."""
        ...


class DrawnChoices:
    """Choices drawn by hypothesis (``st.data()``), so that its examples shrink to the smallest failing request."""

    def __init__(self, data: Any) -> None:
        self._data = data

    def integer(self, low: int, high: int) -> int:
        """A whole number in ``[low, high]``."""
        value: int = self._data.draw(st.integers(low, high))
        return value

    def raw(self, most: int) -> bytes:
        """Up to ``most`` bytes."""
        value: bytes = self._data.draw(st.binary(max_size=most))
        return value

    def text(self, most: int) -> str:
        """Up to ``most`` characters, any of Unicode but surrogates."""
        value: str = self._data.draw(st.text(max_size=most))
        return value


def pick(choices: Choices, options: Sequence[T]) -> T:
    """One of ``options``."""
    return options[choices.integer(0, len(options) - 1)]


@dataclass
class Case:
    """One request to an endpoint.

    Attributes:
        method: The HTTP method.
        path: The request path.
        body: The body's bytes.
        stream: How the body is given: ``"bytes"``, ``"exact"`` (a stream and its length),
            ``"unsized"`` (a stream, no Content-Length), ``"broken"`` (a stream that fails after some bytes).
        headers: The request headers (names may repeat in other cases, and carry CR/LF).
        remote_addr: The caller's address.
        endpoint: ``"task"`` (``im_task.executor.handle_request``) or ``"all"`` (``im_task.endpoints.handle_request``).
        accept_unbound: The ``accept_unbound_envelopes`` setting for the case.
        note: How the case was made, for reports.
    """

    method: str
    path: str
    body: bytes
    stream: str
    headers: dict[str, str]
    remote_addr: str | None
    endpoint: str
    accept_unbound: bool = True
    note: list[str] = field(default_factory=list)


_METHODS = ("post", "PoSt", "GET", "PUT", "DELETE", "HEAD", "OPTIONS", "", "POST ", "P\u00d6ST")
_ODD_PATHS = (
    "/_ah/task",
    "/_ah/task/",
    "/_ah/task/anything/at/all",
    "/_ah/task/%2e%2e/%2e%2e/etc",
    "/_ah/queue/deferred",
    "/_ah/queue/default",
    "/_ah/queue/mail",
    "/_ah/queue/",
    "/",
    "",
    "/_ah/task/a\r\nCRITICAL forged line",
    "/_ah/task/a%0d%0aCRITICAL forged line",
)
_ONE, _BOTH = ((APPENGINE,), (CLOUDTASKS,)), ((APPENGINE, CLOUDTASKS), (CLOUDTASKS, APPENGINE))
_FAMILY_SETS = (*_ONE, *_ONE, *_BOTH, ())
_VALID_COUNTS = ("0", "1", "2", "5")
_COUNTS = ("0", "1", "5", "-1", "-5", "1.5", "x", "0x10", "9999999999", "\uff11", " 3 ", "", "+1", "1e3", "\x00")
_NAMES = ("t-1", "task-\r\nCRITICAL forged", "t%0d%0aforged", "projects/p/locations/l/queues/q/tasks/t", "", "\x1b[31m")


def _mutate(choices: Choices, seed: Seed, seeds: Sequence[Seed], note: list[str]) -> bytes:
    body = seed.body
    kind = choices.integer(0, 9)
    if kind <= 2:
        note.append("as is")
        return body
    if kind == 3:
        bit = choices.integer(0, len(body) * 8 - 1)
        note.append(f"bit {bit} flipped")
        flipped = bytearray(body)
        flipped[bit // 8] ^= 1 << (bit % 8)
        return bytes(flipped)
    if kind == 4:
        size = choices.integer(0, len(body) - 1)
        note.append(f"truncated to {size}")
        return body[:size]
    if kind == 5:
        tail = choices.raw(64) or b"\x00"
        note.append(f"extended by {tail!r}")
        return body + tail
    if kind == 6:
        version = choices.integer(0, 255)
        kid = pick(choices, [k for s in seeds for k in [s.body[1 : 1 + KEY_ID_SIZE]]] + [choices.raw(KEY_ID_SIZE)])
        note.append(f"version {version}, key id {kid.hex()}")
        return bytes([version]) + kid.ljust(KEY_ID_SIZE, b"\x00")[:KEY_ID_SIZE] + body[1 + KEY_ID_SIZE :]
    if kind == 7:  # re-signed with another secret: a valid MAC under a key the endpoint does not have
        other = Keyring([pick(choices, OTHER_SECRETS).encode()])
        prefix = bytes([body[0]]) + other.signing_id
        rest = body[1 + KEY_ID_SIZE + 32 :]
        note.append("re-signed with another secret")
        return prefix + other.sign(prefix, rest) + rest
    if kind == 8:  # another seed's header on this one's body: a spliced envelope
        donor = pick(choices, seeds)
        note.append(f"header of {donor.name}")
        return donor.body[: 1 + KEY_ID_SIZE + 32] + body[1 + KEY_ID_SIZE + 32 :]
    note.append("random body")
    return choices.raw(2048)


def _path(choices: Choices, seed: Seed, note: list[str]) -> str:
    own = seed.path or "/_ah/queue/deferred"
    kind = choices.integer(0, 8)
    if kind <= 2:
        path = own
    elif kind == 3:
        path = "/mounted" + own
    elif kind == 4:
        path = own + pick(choices, ("/more", "/", "%2F", "x"))
    elif kind == 5:
        path = quote(own, safe="/") if choices.integer(0, 1) else own.replace("/", "%2F")
    elif kind == 6:
        path = own.rsplit("/", 1)[0]
    elif kind == 7:
        path = pick(choices, _ODD_PATHS)
    else:
        path = TASK_PATH_PREFIX + choices.text(40)
    if path == im_task.endpoints.SWEEP_PATH:  # the outbox sweep is not a task endpoint
        path = TASK_PATH_PREFIX + "sweep"
    note.append(f"path {path!r}")
    return path


def _headers(choices: Choices, seed: Seed, note: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    families = pick(choices, _FAMILY_SETS)
    own = seed.queue or "default"
    for family in families:
        queue = pick(choices, (own, own, own, f"projects/p/locations/l/queues/{own}", "other", ""))
        if choices.integer(0, 7) == 0:
            queue = choices.text(20)
        fields = {
            "QueueName": queue,
            "TaskName": pick(choices, _NAMES) if choices.integer(0, 1) else choices.text(20),
            "TaskRetryCount": pick(choices, _VALID_COUNTS if choices.integer(0, 3) else _COUNTS),
            "TaskExecutionCount": pick(choices, _VALID_COUNTS if choices.integer(0, 3) else _COUNTS),
            "TaskETA": pick(choices, ("1700000000.5", "nan", "inf", "-1e400", "x", "")),
        }
        for name, value in fields.items():
            if choices.integer(0, 15) == 0:
                continue  # missing
            headers[family + name] = value
            if choices.integer(0, 15) == 0:  # the same header again, in another case, with another value
                headers[(family + name).lower()] = pick(choices, _COUNTS)
    for _ in range(choices.integer(0, 2)):
        name = pick(choices, ("X-Tenant", "Content-Length", "Authorization", "Transfer-Encoding", "X-Evil\r\nInjected"))
        headers[name] = pick(choices, ("evil", "Bearer x.y.z", "chunked", "-1", "99999999999", "\r\n")) + (
            choices.text(8)
        )
    note.append(f"headers {headers!r}")
    return headers


def _method(choices: Choices) -> str:
    kind = choices.integer(0, 9)
    if kind <= 6:
        return "POST"
    return pick(choices, _METHODS) if kind <= 8 else choices.text(8)


def build_case(choices: Choices, seeds: Sequence[Seed]) -> tuple[Case, Seed]:
    """Builds one hostile (or, now and then, genuine) request from a seed.

    Args:
        choices: Where the choices come from.
        seeds: The seeds of :func:`make_seeds`.

    Returns:
        The case, and the seed it was made from.
    """
    seed = pick(choices, seeds)
    note = [seed.name]
    body = _mutate(choices, seed, seeds, note)
    stream = pick(choices, ("bytes", "bytes", "exact", "unsized", "broken", "short"))
    headers = _headers(choices, seed, note)
    case = Case(
        method=_method(choices),
        path=_path(choices, seed, note),
        body=body,
        stream=stream,
        headers=headers,
        remote_addr=pick(choices, (None, "10.0.0.1", "0.1.0.2", "10.0.0.1\r\nforged")),
        endpoint=pick(choices, ("task", "all")),
        accept_unbound=choices.integer(0, 3) != 0,
        note=note,
    )
    return case, seed


class _BrokenStream(io.RawIOBase):
    """A body stream that fails after ``good`` bytes, as a reset connection or malformed chunks do."""

    def __init__(self, data: bytes, good: int) -> None:
        self._data = io.BytesIO(data[:good])

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        if not chunk:
            raise ConnectionResetError("connection reset by peer (fuzz)")
        return chunk


def _body(case: Case) -> tuple[bytes | IO[bytes], dict[str, str]]:
    headers = dict(case.headers)
    if case.stream == "bytes":
        return case.body, headers
    if case.stream == "broken":
        headers["Content-Length"] = str(len(case.body))
        return _BrokenStream(case.body, len(case.body) // 2), headers  # type: ignore[return-value]
    if case.stream == "short":  # declares more than it sends
        headers["Content-Length"] = str(len(case.body) + 10)
        return io.BytesIO(case.body), headers
    if case.stream == "exact":
        headers["Content-Length"] = str(len(case.body))
    else:
        headers.pop("Content-Length", None)
    return io.BytesIO(case.body), headers


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _LoadsSpy:
    """Counts ``pickle.loads`` calls (as the serialization module makes them) and lets them through."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def __call__(self, data: bytes, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(data, *args, **kwargs)


@dataclass
class Outcome:
    """What a case did.

    Attributes:
        response: The endpoint's response.
        records: The log records of the ``im_task`` logger while it ran.
        loads: How many times ``pickle.loads`` ran.
        sink: What the sink recorded (``"unpickled"`` from a Tripwire, ``("ran", mode)`` from the task).
        escaped: The exception that escaped the handler, formatted, if one did.
    """

    response: TaskResponse | None
    records: list[logging.LogRecord]
    loads: int
    sink: list[Any]
    escaped: str = ""

    @property
    def unpickled(self) -> bool:
        """Whether anything was unpickled: ``pickle.loads`` ran or a Tripwire went off."""
        return self.loads > 0 or "unpickled" in self.sink


@contextmanager
def _watching() -> Iterator[tuple[_Collector, _LoadsSpy]]:
    logger = logging.getLogger("im_task")
    collector = _Collector()
    spy = _LoadsSpy(pickle.loads)
    level = logger.level
    logger.addHandler(collector)
    logger.setLevel(logging.DEBUG)
    # the module im_task.serialization calls: pickle.loads, patched where it is looked up
    vars(im_task.serialization)["pickle"].loads = spy
    try:
        yield collector, spy
    finally:
        vars(im_task.serialization)["pickle"].loads = spy.real
        logger.removeHandler(collector)
        logger.setLevel(level)


def run_case(case: Case) -> Outcome:
    """Sends a case to its endpoint, watching the unpickler, the sink and the log.

    An exception escaping the handler is caught and reported in :attr:`Outcome.escaped` (a violation).
    """
    configure(accept_unbound_envelopes=case.accept_unbound)
    sink.reset()
    body, headers = _body(case)
    handler = im_task.executor.handle_request if case.endpoint == "task" else im_task.endpoints.handle_request
    response, escaped = None, ""
    with _watching() as (collector, spy):
        try:
            response = handler(case.method, case.path, body, headers, case.remote_addr)
        except Exception:
            escaped = traceback.format_exc()
    return Outcome(response, collector.records, spy.calls, sink.events(), escaped)


def secret_markers(secrets: Sequence[str]) -> list[str]:
    """The forms in which a secret or its key bytes could leak: as text, hex, base64 and ``repr``."""
    markers: list[str] = []
    for secret in secrets:
        key = secret.encode()
        markers += [secret, key.hex(), base64.b64encode(key).decode(), repr(key)[2:-1], secret[8:24]]
    return markers


def _presented_as_its_own(case: Case, seed: Seed) -> bool:
    """Whether a genuine seed's body is presented where it may run: its own path and queue, in time."""
    if not seed.genuine or seed.expired or case.method.upper() != "POST":
        return False
    if seed.path is None:
        return case.accept_unbound
    found = im_task.endpoints.find_endpoint(case.path)
    at_deferred = case.endpoint == "all" and found in (
        im_task.endpoints.DEFERRED_ENDPOINT,
        im_task.endpoints.DEFERRED_QUEUE_ENDPOINT,
    )
    if seed.path == "":
        return at_deferred
    task_headers = TaskHeaders.parse(Headers(case.headers))
    queue = task_headers.queue_name if task_headers else None
    return unquote(case.path).endswith(unquote(seed.path)) and queue == seed.queue


def _text_of(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += "".join(traceback.format_exception(*record.exc_info))
    return text


def violations(case: Case, outcome: Outcome, seeds: Sequence[Seed], markers: Sequence[str]) -> list[str]:
    """The invariants a case broke (empty when none).

    Args:
        case: The request.
        outcome: What it did (:func:`run_case`).
        seeds: Every seed, to tell a genuine body from a forged one.
        markers: The secret's forms (:func:`secret_markers`).
    """
    found: list[str] = []
    if outcome.escaped:
        return [f"an exception escaped the handler: {outcome.escaped.strip().splitlines()[-1]}"]
    response = outcome.response
    assert response is not None
    genuine = next((s for s in seeds if s.genuine and s.body == case.body), None)
    if outcome.unpickled and (genuine is None or not _presented_as_its_own(case, genuine)):
        found.append("unpickled without a valid signature for this path, queue and time")
    if response.status not in STATUSES:
        found.append(f"status {response.status} is not one the endpoint answers")
    if genuine is None and response.status not in REFUSALS:
        found.append(f"status {response.status} for a body that is not a genuine envelope")
    raised = ("ran", "raise") in outcome.sink
    if response.status == 500 and not raised:
        found.append(f"500 from im-task's own code: {response.exception!r}")
    sent = response.body.decode("latin-1") + repr(response.headers)
    if "Traceback" in sent:
        found.append("a traceback in the response")
    if any(marker in sent for marker in markers):
        found.append("a secret in the response")
    for record in outcome.records:
        text = _text_of(record)
        if any(marker in text for marker in markers):
            found.append(f"a secret in a log record: {record.getMessage()[:200]!r}")
        if response.status in REFUSALS:  # refused: an unauthenticated request
            if record.levelno >= logging.ERROR:
                found.append(f"a refusal logged at {record.levelname}: {record.getMessage()[:200]!r}")
            if record.exc_info:
                found.append(f"a refusal logged with a traceback: {record.getMessage()[:200]!r}")
            if "\r" in record.getMessage() or "\n" in record.getMessage():
                found.append(f"a raw CR/LF in the log line of a refusal: {record.getMessage()[:200]!r}")
    return found
