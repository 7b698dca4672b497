"""App Engine's ``deferred`` API on im-task: ``from im_task import deferred`` for ``google.appengine.ext.deferred``.

``defer(obj, *args, **kwargs)`` enqueues a call of any callable, with App
Engine's ``_countdown``, ``_eta``, ``_name``, ``_target``, ``_transactional``,
``_url``, ``_retry_options``, ``_queue`` and ``_headers`` options, and returns
the task's :class:`~im_task.TaskHandle`. The call travels as every im-task
call does: pickled with cloudpickle (so nested functions, closures and lambdas
work too, unlike the original) and signed. Every adapter serves
``/_ah/queue/deferred`` and ``/_ah/queue/<queue>`` (``_url=None``) through
the core's endpoint table, with the task endpoint's request contract;
:data:`application` and :class:`Handler` serve it from code that mounted the
original handler by hand.

Callables travel as in the original: a bound method (or a bound builtin
method) as ``invoke_member(obj, name, ...)``, so the object is pickled and its
method looked up again when the task runs; functions, classes, callable
objects, class methods, static methods and builtins as themselves. A
non-callable is a ``ValueError`` (:class:`~im_task.ConfigurationError`) at
once, and so are arguments that do not fit the callable's signature (an
:class:`~im_task.EnqueueError`).

The payloads the original wrote (a plain pickle of ``(callable, args,
kwargs)``) are refused with 403 unless ``accept_legacy_payloads`` is set, for
a migration window, in production on App Engine; they run then only from
App Engine's task queue (``X-AppEngine-*`` headers, source address
``0.1.0.2``). See the migration guide for the risk.

Example:
    >>> from im_task import deferred
    >>> deferred.defer(print, "hello", _countdown=60)  # doctest: +SKIP
    TaskHandle(name=None, queue='default', url='/_ah/queue/deferred', eta=...)
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from http import HTTPStatus
from typing import Any

from im_task.config import get_keyring, get_settings
from im_task.decorator import TaskFunction, TaskHandle
from im_task.endpoints import DEFERRED_QUEUE_ROUTE, DEFERRED_URL
from im_task.envelope import Binding, PayloadReference, open_sealed, seal
from im_task.errors import (
    ConfigurationError,
    EnqueueError,
    Error,
    PermanentTaskFailure,
    SignatureError,
    SingularTaskFailure,
)
from im_task.executor import handle_deferred_request, legacy_payloads_accepted, loads_legacy_call
from im_task.options import TaskOptions
from im_task.retry import RetryOptions
from im_task.serialization import TaskCall, TaskWrapper, dumps_call, loads_call
from im_task.state import STATE
from im_task.wsgi import handle_environ, send

__all__ = [
    "DEFERRED_URL",
    "Error",
    "Handler",
    "PermanentTaskFailure",
    "SingularTaskFailure",
    "TaskHandler",
    "application",
    "defer",
    "invoke_member",
    "run",
    "run_from_datastore",
    "serialize",
    "set_level",
]

logger = logging.getLogger("im_task")

StartResponse = Callable[..., Any]


def invoke_member(obj: Any, membername: str, *args: Any, **kwargs: Any) -> Any:
    """Looks a member of an object up and calls it: how bound methods travel.

    Args:
        obj: The object.
        membername: The name of the member to call.
        *args: Positional arguments for the member.
        **kwargs: Keyword arguments for the member.

    Returns:
        What the member returns.

    Raises:
        ConfigurationError: ``membername`` is not a string.
        AttributeError: The object has no such member (any more).
    """
    if not isinstance(membername, str):
        raise ConfigurationError(f"invoke_member() takes the member's name as a str, not {type(membername).__name__}.")
    return getattr(obj, membername)(*args, **kwargs)


def _curry(obj: Any, args: tuple[Any, ...]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The callable and positional arguments a call of ``obj`` travels as (bound methods via ``invoke_member``).

    Raises:
        ConfigurationError: ``obj`` is not callable (a ``ValueError``, as in the original).
    """
    if isinstance(obj, types.MethodType):  # a bound method, or a class method bound to its class
        return invoke_member, (obj.__self__, obj.__func__.__name__, *args)
    if isinstance(obj, types.BuiltinMethodType):
        owner = getattr(obj, "__self__", None)
        if owner is not None and not isinstance(owner, types.ModuleType):  # "abc".upper, [].append
            return invoke_member, (owner, obj.__name__, *args)
        return obj, args  # a builtin function (len): its __self__ is its module
    if callable(obj):
        return obj, args
    raise ConfigurationError(
        f"defer() needs a callable (a function, a method, a class, an object with __call__), not "
        f"{type(obj).__name__}: obj must be callable."
    )


def _check_arguments(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuses arguments that do not fit ``obj``'s signature, at the call rather than in the task."""
    try:
        signature = inspect.signature(obj, follow_wrapped=False)  # a wrapper may supply arguments itself
    except (TypeError, ValueError):
        return  # some builtins have none: let the call through
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        name = getattr(obj, "__qualname__", None) or repr(obj)
        unknown = sorted(key for key in kwargs if key.startswith("_") and key not in signature.parameters)
        hint = (
            f" {', '.join(unknown)} is not one of defer()'s options: "
            "_countdown, _eta, _name, _target, _transactional, _url, _retry_options, _queue, _headers, "
            "_raise_if_exists."
            if unknown
            else ""
        )
        raise EnqueueError(f"Cannot defer {name}: the arguments do not fit {name}{signature}: {exc}.{hint}") from None


def _as_retry_options(value: Any) -> Any:
    """App Engine's ``TaskRetryOptions`` (an object with the same attribute names) as a dict; the rest unchanged."""
    if value is None or isinstance(value, (Mapping, RetryOptions)):
        return value
    names = [f.name for f in fields(RetryOptions)]
    if not any(hasattr(value, name) for name in names):
        return value  # let TaskOptions say what it takes
    return {name: getattr(value, name) for name in names if getattr(value, name, None) is not None}


def defer(
    obj: Any,
    *args: Any,
    _countdown: float | dt.timedelta | None = None,
    _eta: dt.datetime | None = None,
    _name: str | None = None,
    _target: str | None = None,
    _transactional: bool = False,
    _url: str | None = DEFERRED_URL,
    _retry_options: Any = None,
    _queue: str | Sequence[str] | None = "default",
    _headers: Mapping[str, str] | None = None,
    _raise_if_exists: bool = True,
    **kwargs: Any,
) -> TaskHandle:
    """Enqueues a call of ``obj(*args, **kwargs)``, as App Engine's ``deferred.defer`` did.

    Args:
        obj: The callable: a function (nested functions, closures and lambdas
            too), a class, a callable object, a bound method, a class or static
            method, a builtin or a bound builtin method.
        *args: Positional arguments for the call.
        _countdown: Seconds (or a timedelta) to wait before running.
        _eta: When to run (a naive datetime is UTC).
        _name: The task's name; a name the queue remembers is a ``TaskAlreadyExistsError``.
        _target: The App Engine service or version to run it on.
        _transactional: Enqueue only if the surrounding transaction commits.
        _url: Where the queue POSTs it: ``/_ah/queue/deferred`` by default;
            None for ``/_ah/queue/<queue>``; any other path must be served
            (mount :data:`application` there, or use the task route).
        _retry_options: A dict of :class:`~im_task.retry.RetryOptions` fields,
            a ``RetryOptions``, or an object with those attributes (App Engine's ``TaskRetryOptions``).
        _queue: The queue (``"default"``), or a list of queues to spread the tasks over (one is picked
            at random per call, as FreshPlanet's did); None for the configured default queue.
        _headers: Request headers, merged over ``Content-Type: application/octet-stream`` (they may replace it).
        _raise_if_exists: False to treat a taken ``_name`` as done (logged at info), FreshPlanet's choice.
        **kwargs: Keyword arguments for the call.

    Returns:
        The task's handle (name, queue, url, eta).

    Raises:
        ConfigurationError: ``obj`` is not callable (a ``ValueError``), or an option is invalid.
        EnqueueError: The arguments do not fit ``obj``'s signature, cannot be
            pickled, or the queue refused the task (``TaskAlreadyExistsError``,
            ``TaskTooLargeError``, ``BadTransactionStateError``...).
    """
    func, call_args = _curry(obj, args)
    _check_arguments(obj, args, kwargs)
    queue = _queue if _queue is not None else get_settings().default_queue
    if _url is None and not isinstance(queue, str):
        raise ConfigurationError(
            f"_url=None posts to /_ah/queue/<queue>, which needs one queue name, not {queue!r}: give one "
            "queue, or keep the default _url to spread the tasks over several queues."
        )
    options = TaskOptions.from_kwargs(
        {
            "queue": queue,
            "countdown": _countdown,
            "eta": _eta,
            "name": _name,
            "target": _target,
            "transactional": _transactional,
            "retry_options": _as_retry_options(_retry_options),
            "headers": _headers,
            "raise_if_exists": _raise_if_exists,
            "url": f"{DEFERRED_QUEUE_ROUTE}/{queue}" if _url is None else _url,
        }
    )
    return TaskFunction(func, options)(*call_args, **kwargs)


def serialize(obj: Any, *args: Any, **kwargs: Any) -> bytes:
    """Serialises a call into the signed bytes :func:`run` (and the deferred endpoints) accept.

    Args:
        obj: The callable (see :func:`defer`).
        *args: Positional arguments for the call.
        **kwargs: Keyword arguments for the call.

    Returns:
        A signed envelope around the cloudpickled call: :func:`run` runs it, and so do the deferred
        endpoints (under any path, from any queue) until ``envelope_lifetime`` has passed.

    Raises:
        ConfigurationError: ``obj`` is not callable, or no secret is configured in production.
        EnqueueError: The call cannot be pickled.
    """
    func, call_args = _curry(obj, args)
    call = TaskCall(func, call_args, kwargs, description=getattr(obj, "__qualname__", "") or repr(obj))
    binding = Binding.for_serialized(lifetime=get_settings().envelope_lifetime)
    return seal(dumps_call(call), get_keyring(), binding)


def run(data: bytes) -> Any:
    """Verifies, decodes and makes a serialised call (from :func:`serialize`), returning what the callable returns.

    With ``accept_legacy_payloads`` in force (production on App Engine), the
    unsigned pickles of the original library are run too.

    Args:
        data: The bytes :func:`serialize` returned (or a task's body).

    Returns:
        The callable's result.

    Raises:
        PermanentTaskFailure: ``data`` does not verify or cannot be decoded
            (the cause says why), as the original raised for undecodable data.
        ConfigurationError: ``data`` is not bytes.
        Exception: Whatever the callable raises.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"run() takes the bytes serialize() returned, not {type(data).__name__}.")
    raw = bytes(data)
    try:
        opened = open_sealed(raw, get_keyring())
    except SignatureError as exc:
        if not legacy_payloads_accepted(get_settings()):
            raise PermanentTaskFailure(f"Cannot run the deferred call: {exc}") from exc
        return _call(_legacy_call(raw))
    if isinstance(opened, PayloadReference):
        return _run_reference(opened)
    try:
        call = loads_call(opened)
    except Exception as exc:
        raise PermanentTaskFailure(f"Cannot decode the deferred call: {exc}") from exc
    return _call(call)


def _legacy_call(raw: bytes) -> TaskCall:
    try:
        return loads_legacy_call(raw)
    except Exception as exc:
        raise PermanentTaskFailure(f"Cannot decode the legacy deferred call: {exc}") from exc


def _call(call: TaskCall) -> Any:
    func = call.func.func if isinstance(call.func, TaskWrapper) else call.func
    return func(*call.args, **call.kwargs)


def _run_reference(reference: PayloadReference) -> Any:
    """Runs a stored payload; deletes it after success or a permanent failure, keeps it otherwise."""
    from im_task.stores.base import PayloadUnavailableError, get_payload_store, load_payload

    store = get_payload_store()
    try:
        call = loads_call(load_payload(reference, store))
    except PayloadUnavailableError as exc:
        raise PermanentTaskFailure(f"Cannot run the stored deferred call: {exc}") from exc
    except Exception as exc:
        raise PermanentTaskFailure(f"Cannot decode the stored deferred call: {exc}") from exc
    try:
        result = _call(call)
    except PermanentTaskFailure:
        store.delete(reference.key)
        raise
    store.delete(reference.key)
    return result


def run_from_datastore(key: PayloadReference) -> Any:
    """Runs a call kept in the payload store, then deletes it, as the original did with its datastore entity.

    The stored payload is deleted after success or ``PermanentTaskFailure``
    and kept when the call raises anything else (so a retry finds it). A
    missing or altered payload is a ``PermanentTaskFailure``.

    Args:
        key: The verified reference to the stored payload (a bare store key
            cannot be checked against its signed hash, so it is refused).

    Returns:
        The callable's result.

    Raises:
        ConfigurationError: ``key`` is not a :class:`~im_task.envelope.PayloadReference`.
        PermanentTaskFailure: The payload is missing, altered or undecodable.
    """
    if not isinstance(key, PayloadReference):
        raise ConfigurationError(
            f"run_from_datastore() takes the PayloadReference of a verified envelope, not {type(key).__name__}: a "
            "bare key cannot be checked against the payload's signed SHA-256. Large deferred calls need no "
            "run_from_datastore in im-task: the endpoint loads stored payloads itself."
        )
    return _run_reference(key)


def set_level(level: int) -> None:
    """Sets the level at which the endpoints log a task's queue headers (DEBUG by default, as FreshPlanet's).

    Args:
        level: A :mod:`logging` level, e.g. ``logging.INFO``.

    Raises:
        ConfigurationError: ``level`` is not a logging level number.
    """
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= logging.CRITICAL:
        raise ConfigurationError(f"set_level() takes a logging level such as logging.INFO, not {level!r}.")
    with STATE.lock:
        STATE.header_log_level = level


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI application serving the deferred endpoint at every path, as the original ``deferred.application``.

    Args:
        environ: The WSGI environ.
        start_response: The WSGI ``start_response``.

    Returns:
        The response body.
    """
    return send(handle_environ(environ, handler=handle_deferred_request), start_response)


class Handler:
    """The deferred endpoint for code that mounted the original ``TaskHandler`` by hand.

    ``Handler().post(environ)`` serves a WSGI environ as a POST to the
    deferred endpoint and returns ``(body, status, headers)`` for your
    framework to send. No environment variable is read (the original failed
    with a 500 without ``SERVER_SOFTWARE``).
    """

    def post(self, environ: Mapping[str, Any]) -> tuple[bytes, HTTPStatus, list[tuple[str, str]]]:
        """Serves one request.

        Args:
            environ: The request's WSGI environ (``wsgi.input``, ``CONTENT_LENGTH``, ``HTTP_*``...).

        Returns:
            The response body, status and headers.

        Raises:
            ConfigurationError: ``environ`` is not a mapping.
        """
        if not isinstance(environ, Mapping):
            raise ConfigurationError(f"Handler.post() takes a WSGI environ (a dict), not {type(environ).__name__}.")
        response = handle_environ({**environ, "REQUEST_METHOD": "POST"}, handler=handle_deferred_request)
        return response.body, HTTPStatus(response.status), list(response.headers)


#: The original's name for :class:`Handler`.
TaskHandler = Handler
