"""The task endpoint, framework-neutral: verify, decode, run, answer.

Adapters pass ``(method, path, body, headers, remote address)`` to
:func:`handle_request` and turn the :class:`TaskResponse` into their
framework's response. Every status the endpoint answers is decided here:

=================================================  ======
situation                                          status
=================================================  ======
task ran                                           200
``PermanentTaskFailure`` raised                    200
``SingularTaskFailure`` raised                     408
any other exception                                500
``task_retry_limit`` passed (proven caller)        200
last attempt ``task_retry_limit`` allows failed    200
no task headers, or bad or missing signature       403
caller refused (see :mod:`im_task.caller`)         403
settings broken (no secret in production...)       500
signature verified but the call cannot be decoded  200
body over ``max_body_size``                        413
body cannot be read (malformed chunks, cut short)  400
method other than POST                             405
=================================================  ======

Every endpoint that runs calls shares the one pipeline, :func:`serve`; only
the way a verified body is opened differs. The task endpoint accepts signed
envelopes only (:func:`open_signed`); App Engine ``deferred``'s endpoints
(:func:`handle_deferred_request`) also accept, when
``accept_legacy_payloads`` is set and only in production on App Engine, the
unsigned pickles the original library wrote (:func:`open_deferred`).

The retry count decides against ``task_retry_limit`` only when the caller
proved it is the queue (:func:`~im_task.caller.check_caller`), or the
delivery carries the signed proof of im-task's own queues
(:mod:`im_task.deliveryproof`). Another caller, which only development
accepts, may deliver the task, but its count decides nothing: the task
runs, a failure is answered as any failure, and the limit is left to the
queue's own retry policy.
"""

from __future__ import annotations

import importlib
import io
import logging
import pickle
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import IO, Any

from im_task._instances import instance_of
from im_task.body import read_body
from im_task.caller import CallerError, check_caller, on_app_engine
from im_task.config import Settings, get_keyring, get_settings
from im_task.context import task_context
from im_task.deliveryproof import PROOF_HEADER, Attempt, proven
from im_task.envelope import CONTENT_TYPE, Binding, PayloadReference, unseal
from im_task.errors import (
    BodyTooLargeError,
    ConfigurationError,
    PermanentTaskFailure,
    SignatureError,
    SingularTaskFailure,
    UnreadableBodyError,
)
from im_task.headers import APPENGINE, FAMILIES, Headers, TaskHeaders, queue_headers
from im_task.keys import Keyring
from im_task.outcomes import Delivered, keeps_payload, needs_settling, own_headers, settle
from im_task.reruns import RERUN_HEADER
from im_task.response import TaskResponse, answer
from im_task.serialization import TaskCall, TaskWrapper, loads_call
from im_task.state import STATE
from im_task.stores.base import PayloadStore, PayloadUnavailableError, get_payload_store, load_payload

__all__ = [
    "APP_ENGINE_TASK_ADDRESS",
    "Arrival",
    "Opener",
    "Payload",
    "TaskResponse",
    "check_legacy_payloads",
    "handle_deferred_request",
    "handle_request",
    "legacy_payloads_accepted",
    "loads_legacy_call",
    "open_deferred",
    "open_signed",
    "serve",
]

logger = logging.getLogger("im_task")
_warmup_lock = threading.Lock()


#: The source address of App Engine task queue requests, which App Engine's front end sets.
APP_ENGINE_TASK_ADDRESS = "0.1.0.2"


@dataclass(frozen=True)
class Arrival:
    """What is known of a request when its body is opened: the caller has been accepted.

    Attributes:
        task: The queue's task headers.
        headers: Every request header (case-insensitive).
        remote_addr: The caller's address, if known.
        settings: The settings in force.
        path: The request path, which a bound envelope must name.
    """

    task: TaskHeaders
    headers: Headers
    remote_addr: str | None
    settings: Settings
    path: str = ""


@dataclass(frozen=True)
class Payload:
    """A verified body's payload and how to decode it into the call to make.

    Attributes:
        data: The payload bytes.
        decode: Turns them into the call; raising means "undecodable" (200, dropped).
        reference: For a task too large to travel inline, the verified reference to its stored
            payload (``data`` is then empty until :func:`_run_stored` loads it).
        binding: What the verified envelope is bound to; None for an unbound or legacy one.
    """

    data: bytes
    decode: Callable[[bytes], TaskCall] = loads_call
    reference: PayloadReference | None = None
    binding: Binding | None = None


#: Opens a body: ``opener(data, keyring, arrival)`` returns its payload, or raises ``SignatureError`` (403).
Opener = Callable[[bytes, Keyring, Arrival], Payload]


def open_signed(data: bytes, keyring: Keyring, arrival: Arrival) -> Payload:
    """Opens a signed envelope: the task endpoint's only way in.

    A bound envelope runs only under its own path and queue, and until it
    expires; an unbound one (made before envelopes were bound) only while
    ``accept_unbound_envelopes`` is on.

    Raises:
        SignatureError: The body is not an envelope signed with a configured secret, or it may not run here.
    """
    return _open_bound(data, keyring, arrival, deferred=False)


def _open_bound(data: bytes, keyring: Keyring, arrival: Arrival, *, deferred: bool) -> Payload:
    opened = unseal(data, keyring)
    binding = opened.binding
    if binding is None:
        _check_unbound(arrival)
    else:
        refusal = binding.refusal(
            path=arrival.path,
            queue=arrival.task.queue_name,
            deferred=deferred,
            lifetime=arrival.settings.envelope_lifetime,
        )
        if refusal is not None:
            raise SignatureError(f"The signature verifies, but {refusal}.")
    if isinstance(opened.payload, PayloadReference):
        return Payload(b"", reference=opened.payload, binding=binding)
    return instance_of(Payload, {"data": opened.payload, "decode": loads_call, "reference": None, "binding": binding})


def _check_unbound(arrival: Arrival) -> None:
    """Lets an unbound envelope through while ``accept_unbound_envelopes`` is on, saying so once per process."""
    if not arrival.settings.accept_unbound_envelopes:
        raise SignatureError(
            "The signature verifies, but the envelope is unbound (made by im-task before envelopes were bound "
            "to their task) and accept_unbound_envelopes is off."
        )
    if STATE.first_warning("unbound envelopes"):
        logger.warning(
            "Ran a task from an unbound envelope (made by im-task before envelopes were bound to their task's "
            "path, queue and expiry), such as a task enqueued before an upgrade. Set accept_unbound_envelopes to "
            "False (IM_TASK_ACCEPT_UNBOUND_ENVELOPES=false) once those have run, so that no captured one can "
            "be replayed."
        )


def handle_request(
    method: str,
    path: str,
    body: bytes | IO[bytes],
    headers: Mapping[str, str],
    remote_addr: str | None = None,
) -> TaskResponse:
    """Handles one request to the task endpoint.

    Args:
        method: The HTTP method.
        path: The request path; a bound envelope runs only under its own task's path.
        body: The body, as bytes or as a stream to read (at most
            ``max_body_size + 1`` bytes are read from it).
        headers: The request headers, in any case.
        remote_addr: The caller's address, if known.

    Returns:
        The response to send.
    """
    return serve(method, path, body, headers, remote_addr)


def handle_deferred_request(
    method: str,
    path: str,
    body: bytes | IO[bytes],
    headers: Mapping[str, str],
    remote_addr: str | None = None,
) -> TaskResponse:
    """Handles one request to App Engine ``deferred``'s endpoints (``/_ah/queue/deferred``, ``/_ah/queue/<queue>``).

    The same contract as the task endpoint; besides signed envelopes it runs
    the unsigned pickles of the original library when
    :func:`legacy_payloads_accepted` says so.

    Args:
        method: The HTTP method.
        path: The request path.
        body: The body, as bytes or as a stream.
        headers: The request headers, in any case.
        remote_addr: The caller's address, if known.

    Returns:
        The response to send.
    """
    return serve(method, path, body, headers, remote_addr, opener=open_deferred)


def serve(
    method: str,
    path: str,
    body: bytes | IO[bytes],
    headers: Mapping[str, str],
    remote_addr: str | None = None,
    *,
    opener: Opener = open_signed,
) -> TaskResponse:
    """The pipeline of every endpoint that runs calls: method, task headers, caller, size, open, decode, run.

    Args:
        method: The HTTP method.
        path: The request path, for logs.
        body: The body, as bytes or as a stream to read (at most ``max_body_size + 1`` bytes are read).
        headers: The request headers, in any case.
        remote_addr: The caller's address, if known.
        opener: How a body is opened once the caller is accepted (:func:`open_signed` by default).

    Returns:
        The response to send; its status follows the table of this module.
    """
    if method.upper() != "POST":
        return answer(405, "Method Not Allowed: tasks are POSTed.", Allow="POST")
    view = headers if isinstance(headers, Headers) else Headers(headers)
    task = TaskHeaders.parse(view)
    if task is None:
        logger.warning("Refused %r from %s: no task queue headers.", path, _source(remote_addr))
        return answer(403, "Forbidden: not a task queue request.")
    if task.retry_count < 0 or task.execution_count < 0:
        logger.warning(
            "Refused task %r (%r) from %s: its retry or execution count header is not a whole number.",
            task.task_name,
            path,
            _source(remote_addr),
        )
        return answer(403, "Forbidden: malformed task queue headers.")
    try:
        # Read without the lock once resolved; a pair read while the settings changed is read again under it
        # (see State.restore and decorator._Moment.current).
        settings, keyring = STATE.settings, STATE.keyring
        if settings is None or keyring is None or STATE.settings is not settings:
            settings, keyring = get_settings(), get_keyring()
        trusted = check_caller(task.family, view, settings)  # before the body: a refused caller sends nothing we read
    except CallerError as exc:
        logger.warning("Refused task %r (%r) from %s: %s", task.task_name, path, _source(remote_addr), exc)
        return answer(403, "Forbidden: the caller is not the task queue.", exc)
    except ConfigurationError as exc:
        logger.error("Task %r (%r) not run; the queue will retry it. Misconfigured: %s", task.task_name, path, exc)
        return answer(500, "im-task is misconfigured; see the server log.", exc)
    try:
        data = read_body(body, view.get("Content-Length"), settings.max_body_size)
    except BodyTooLargeError as exc:  # the caller is not authenticated yet: a refusal, not an error of ours
        logger.warning("Refused task %r (%r) from %s: %s", task.task_name, path, _source(remote_addr), exc)
        return answer(413, "Content Too Large.", exc)
    except UnreadableBodyError as exc:  # malformed chunks, a reset: the client's doing, so 400 and no traceback
        logger.warning("Refused task %r (%r) from %s: %s", task.task_name, path, _source(remote_addr), exc)
        return answer(400, "Bad Request: the body could not be read.", exc)
    try:
        arrival = {"task": task, "headers": view, "remote_addr": remote_addr, "settings": settings, "path": path}
        payload = opener(data, keyring, instance_of(Arrival, arrival))
    except SignatureError as exc:
        logger.warning("Refused task %r (%r) from %s: %s", task.task_name, path, _source(remote_addr), exc)
        return answer(403, "Forbidden: the task signature does not verify.", exc)
    if not trusted:  # im-task's own queues prove the attempt with the shared secret
        attempt = Attempt(task.queue_name, task.task_name, task.retry_count, task.execution_count)
        trusted = proven(view.get(PROOF_HEADER), attempt, data, keyring)
    hook = STATE.delivery_hook  # the outbox's: marks an outbox task's row sent, whatever the task then does
    if hook is not None:
        hook(task.task_name)
    started = time.monotonic()
    if payload.reference is not None:
        response = _run_stored(task, view, path, payload, payload.reference, trusted=trusted)
    else:
        response = _run(task, view, path, payload, trusted)
    if not needs_settling(response, view):
        return response
    own = payload.binding.headers if payload.binding is not None else own_headers(view)
    return settle(response, Delivered(task, path, data, own, time.monotonic() - started, view))


def _source(remote_addr: str | None) -> str:
    """The caller's address for a log line, escaped (it may come from a header a proxy copied)."""
    return repr(remote_addr) if remote_addr else "an unknown address"


def _run_stored(
    task: TaskHeaders, headers: Headers, path: str, payload: Payload, reference: PayloadReference, *, trusted: bool
) -> TaskResponse:
    """Runs a task whose payload is in the payload store: load, check the hash, run; delete once it is done.

    A missing or altered payload is a permanent failure (200, logged) and is
    never unpickled. The payload is deleted after a 200 (success, permanent
    failure, retry limit, undecodable) and kept while the queue retries.
    """
    try:
        store = get_payload_store()
        data = load_payload(reference, store)
    except PayloadUnavailableError as exc:
        logger.error("Dropped task %r (%r): %s. It will not be retried.", task.task_name, path, exc)
        if store.name == reference.store:  # an altered payload is deleted like any finished task's
            _delete_payload(store, reference, task)
        return answer(200, "Dropped: the task's stored payload is unavailable.", exc, outcome="dropped")
    except Exception as exc:  # the store cannot be reached or made: the queue retries
        logger.exception("Could not load the stored payload of task %r (%r); it will be retried.", task.task_name, path)
        return answer(500, "The task's stored payload could not be loaded; it will be retried.", exc)
    response = _run(task, headers, path, replace(payload, data=data, reference=None), trusted)
    if response.status == 200 and not keeps_payload(response):  # a dead letter's replay needs it
        _delete_payload(store, reference, task)
    return response


def _delete_payload(store: PayloadStore, reference: PayloadReference, task: TaskHeaders) -> None:
    try:
        store.delete(reference.key)
    except Exception:
        logger.warning(
            "Could not delete the stored payload %r of task %r.", reference.key, task.task_name, exc_info=True
        )


def _run(task: TaskHeaders, headers: Headers, path: str, payload: Payload, trusted: bool) -> TaskResponse:
    """Decodes and runs a verified call; ``trusted`` says whether its retry count may decide against its limit."""
    warmup = (STATE.settings or get_settings()).warmup_module
    if warmup and warmup not in STATE.warmed_up:
        try:
            _warm_up(warmup)
        except Exception as exc:
            logger.exception("Could not import the warm-up module %r; task %r will be retried.", warmup, path)
            return answer(500, "The warm-up module failed to import.", exc)
    try:
        call = payload.decode(payload.data)
    except Exception as exc:
        logger.error(
            "Dropped task %r (%r): its call cannot be decoded, %s It will not be retried.",
            task.task_name,
            path,
            _why_undecodable(exc),
            exc_info=True,
        )
        return answer(200, "Dropped: the task cannot be decoded.", exc, outcome="dropped")
    description = call.description or path
    limit = call.retry_limit if trusted else None
    if call.retry_limit is not None and not trusted:
        _note_untrusted_count(task, description, call.retry_limit)
    if limit is not None and task.retry_count > limit:
        logger.error(
            "Gave up task %r (%r) on queue %r after %d retries (task_retry_limit=%d).",
            task.task_name,
            description,
            task.queue_name,
            task.retry_count,
            limit,
        )
        return answer(200, "Gave up: retry limit reached.", outcome="gave-up")
    level = STATE.header_log_level  # DEBUG unless im_task.deferred.set_level() changed it
    if logger.isEnabledFor(level):  # the queue's headers only: others may carry tokens or cookies
        logger.log(level, "Running task %r (%r) with headers %s", task.task_name, description, queue_headers(headers))
    if payload.binding is not None:
        headers = _headers_for_task(headers, payload.binding, task.family)
    kwargs: dict[str, Any] = dict(call.kwargs)
    if call.includeheaders:
        kwargs["headers"] = headers
    func = _unwrap(call.func)
    try:
        with task_context(task, headers):
            func(*call.args, **kwargs)
    except PermanentTaskFailure as exc:
        logger.exception("Task %r (%r) failed permanently; it will not be retried.", task.task_name, description)
        return answer(200, "Failed permanently; not retried.", exc, outcome="failed")
    except Exception as exc:
        if limit is not None and task.retry_count >= limit:
            return _give_up(task, description, limit, exc)
        if isinstance(exc, SingularTaskFailure):
            logger.debug("Task %r (%r) failed once; the queue will retry it: %s", task.task_name, description, exc)
            return answer(408, "Failed this attempt; the queue will retry it.", exc)
        logger.exception(
            "Task %r (%r) failed on retry %d; the queue will retry it unless its own retry limit is used up.",
            task.task_name,
            description,
            task.retry_count,
        )
        return answer(500, "The task failed; the queue will retry it.", exc)
    logger.debug("Task %r (%r) succeeded.", task.task_name, description)
    return answer(200, "OK")


def _give_up(task: TaskHeaders, description: str, limit: int, exc: Exception) -> TaskResponse:
    """The answer to a failure on the last attempt ``task_retry_limit`` allows: given up now, not on one more delivery.

    The queue would deliver it once more only to be told it gave up (and the
    local queue, which honours the task's retry options, would not even
    do that), so saying "it will be retried" here would be untrue.
    """
    logger.error(
        "Task %r (%r) failed on its last attempt (retry %d of task_retry_limit=%d); gave up: it will not be retried.",
        task.task_name,
        description,
        task.retry_count,
        limit,
        exc_info=not isinstance(exc, SingularTaskFailure),
    )
    return answer(200, f"Gave up: the last attempt task_retry_limit={limit} allows failed.", exc, outcome="gave-up")


def _note_untrusted_count(task: TaskHeaders, description: str, limit: int) -> None:
    """Says once per process that a retry limit is left to the queue because the caller did not prove itself."""
    if STATE.first_warning("untrusted retry count"):
        logger.warning(
            "Task %r (%r) has task_retry_limit=%d, but its delivery did not prove it comes from the queue, so its "
            "retry count is not trusted: the task runs, and its queue's own retry limit applies. Only development "
            "accepts such callers: a request made by hand, the Cloud Tasks emulator (give it -r N), or an im-task "
            "queue or worker whose proof did not verify (another secret or data directory, or a clock more than "
            "5 minutes off). In production every caller proves itself.",
            task.task_name,
            description,
            limit,
        )


def _headers_for_task(headers: Headers, binding: Binding, family: str) -> Headers:
    """What a task with a bound envelope sees: the queue's task headers, and its own signed ones, not the caller's.

    Only the task headers of the family the request was accepted with, by their known names: another family's,
    or another ``X-AppEngine-*`` header (``X-AppEngine-User-Is-Admin``), may come from anyone outside App Engine.
    """
    # Besides the family's: a replay's or a queue retry's signed mark, which the task verifies (im_task.reruns)
    return headers._picked(_SEEN_BY_TASKS[family], {"Content-Type": CONTENT_TYPE, **binding.headers})


#: The task headers a queue sends, after the family prefix (``X-AppEngine-`` or ``X-CloudTasks-``).
_TASK_HEADER_NAMES = (
    "QueueName",
    "TaskName",
    "TaskRetryCount",
    "TaskExecutionCount",
    "TaskETA",
    "TaskPreviousResponse",
    "TaskRetryReason",
)
#: What a task sees of the request's headers, by family: ``(lower-case name, name)`` pairs for Headers._picked.
_SEEN_BY_TASKS = {
    family: tuple((name.lower(), name) for name in [*(family + name for name in _TASK_HEADER_NAMES), RERUN_HEADER])
    for family in FAMILIES
}


def _why_undecodable(exc: Exception) -> str:
    if "__main__" in str(exc):
        return (
            "because it names a function of another program's __main__: tasks defined in a script run only in "
            "that same process; define them in an importable module."
        )
    return "probably because the code changed since it was enqueued."


def _unwrap(func: Any) -> Any:
    """The callable to run: a ``TaskFunction``'s own, since calling the ``TaskFunction`` would enqueue again."""
    return func.func if isinstance(func, TaskWrapper) else func


def _warm_up(module: str) -> None:
    with _warmup_lock:
        if module in STATE.warmed_up:
            return
        importlib.import_module(module)
        with STATE.lock:
            STATE.warmed_up.add(module)
        logger.info("Imported warm-up module %s before the first task.", module)


# App Engine deferred's legacy payloads: unsigned pickles of (callable, args, kwargs), for a migration window.


def legacy_payloads_accepted(settings: Settings) -> bool:
    """Whether unsigned legacy payloads may run at all: ``accept_legacy_payloads`` in production on App Engine."""
    return settings.accept_legacy_payloads and settings.production and on_app_engine()


def check_legacy_payloads(settings: Settings) -> list[str]:
    """Refuses ``accept_legacy_payloads`` without the App Engine caller check; adapters reach it at start-up.

    Args:
        settings: The settings in force.

    Returns:
        The warning to log while the opt-in is on (empty when it is off).

    Raises:
        ConfigurationError: ``accept_legacy_payloads`` is set outside production on App Engine.
    """
    if not settings.accept_legacy_payloads:
        return []
    if not legacy_payloads_accepted(settings):
        where = (
            "in development" if not settings.production else "outside App Engine (GAE_ENV is not 'standard' or 'flex')"
        )
        raise ConfigurationError(
            f"accept_legacy_payloads is set {where}. Unsigned payloads are pickles that anyone who can reach "
            "the endpoint could forge to run code; they are accepted only in production on App Engine, where "
            "App Engine's front end strips X-AppEngine-* headers from outside requests and task requests come "
            f"from {APP_ENGINE_TASK_ADDRESS}. Unset IM_TASK_ACCEPT_LEGACY_PAYLOADS (or accept_legacy_payloads in "
            "configure() or your framework's im-task settings) here."
        )
    return [
        "im-task: accept_legacy_payloads is on: the deferred endpoints run unsigned pickles of App Engine's "
        "deferred library when they come from the App Engine task queue. Turn it off as soon as the tasks "
        "enqueued by the old code have run (see the migration guide)."
    ]


def open_deferred(data: bytes, keyring: Keyring, arrival: Arrival) -> Payload:
    """Opens a body sent to a deferred endpoint: a signed envelope, or (opted in) a legacy unsigned pickle.

    Besides the envelopes of tasks bound to a deferred URL, the deferred
    endpoints run calls made by ``deferred.serialize()`` (which App Engine
    apps POST themselves) under any path, from any queue, until they expire.
    A legacy payload is accepted only when :func:`legacy_payloads_accepted`,
    the request carries App Engine's task headers (which App Engine strips
    from outside requests) and it comes from :data:`APP_ENGINE_TASK_ADDRESS`.

    Raises:
        SignatureError: Neither a signed envelope nor an accepted legacy payload.
    """
    try:
        return _open_bound(data, keyring, arrival, deferred=True)
    except SignatureError as exc:
        if not _looks_like_pickle(data):
            raise
        if not legacy_payloads_accepted(arrival.settings):
            raise SignatureError(
                f"{exc} The body looks like an unsigned payload of App Engine's deferred library; see "
                "accept_legacy_payloads in the migration guide to run such payloads during a migration."
            ) from None
        if arrival.task.family != APPENGINE or arrival.remote_addr != APP_ENGINE_TASK_ADDRESS:
            raise SignatureError(
                f"an unsigned legacy payload from {_source(arrival.remote_addr)} with "
                f"{arrival.task.family}* headers: legacy payloads run only from the App Engine task queue "
                f"({APP_ENGINE_TASK_ADDRESS}, X-AppEngine-* headers)."
            ) from None
        logger.info("Task %r carries an unsigned legacy deferred payload; running it.", arrival.task.task_name)
        return Payload(data, loads_legacy_call)


def _looks_like_pickle(data: bytes) -> bool:
    """Pickle protocol 2 and later start with PROTO (0x80); protocols 0 and 1 with a mark or a global."""
    return data[:1] in (b"\x80", b"(", b"c", b"]", b"}")


class _LegacyUnpickler(pickle.Unpickler):
    """Reads App Engine deferred's pickles: its ``invoke_member`` is im-task's."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _LEGACY_MODULES and name == "invoke_member":
            return super().find_class("im_task.deferred", name)
        return super().find_class(module, name)


_LEGACY_MODULES = frozenset({"google.appengine.ext.deferred.deferred", "google.appengine.ext.deferred"})


def loads_legacy_call(data: bytes) -> TaskCall:
    """Decodes App Engine deferred's payload, a pickle of ``(callable, args, kwargs)``.

    Call it only on a payload whose caller is trusted (see :func:`open_deferred`).

    Raises:
        Exception: The payload cannot be unpickled, or is not such a tuple.
    """
    value = _LegacyUnpickler(io.BytesIO(data)).load()
    if not (isinstance(value, tuple) and len(value) == 3 and callable(value[0])):
        raise ValueError("a legacy deferred payload is a pickled (callable, args, kwargs) tuple.")
    func, args, kwargs = value
    return TaskCall(func, tuple(args), dict(kwargs), description=getattr(func, "__qualname__", "") or repr(func))
