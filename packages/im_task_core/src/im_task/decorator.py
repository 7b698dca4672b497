"""The ``@task`` decorator, the ``TaskFunction`` it returns, and ``TaskHandle``."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib
import inspect
import keyword
import logging
import pickle
import random
import reprlib
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, ParamSpec, TypeVar, overload

from im_task import endpoints  # noqa: F401 - loads this process's endpoints, which in-process transports serve
from im_task._instances import instance_of
from im_task.config import Settings, get_keyring, get_settings
from im_task.envelope import (
    CONTENT_TYPE,
    MAX_BINDING_SIZE,
    Binding,
    PayloadReference,
    TaskSealer,
    largest_binding_size,
    seal_reference,
)
from im_task.errors import (
    BulkEnqueueError,
    ConfigurationError,
    EnqueueError,
    Error,
    TaskAlreadyExistsError,
    TaskTooLargeError,
    UnknownQueueError,
)
from im_task.keys import Keyring
from im_task.options import OPTION_NAMES, TaskOptions
from im_task.routing import get_taskroute, task_path
from im_task.runtime import get_transport
from im_task.serialization import ATOMIC_TYPES, CallTemplate, TaskWrapper, all_atomic, dumps_parts
from im_task.state import STATE
from im_task.stores.base import NO_STORE, get_payload_store, store_payload
from im_task.transactions import current_binder, enqueue_transactional
from im_task.transports.base import TaskRequest, Transport, check_fields, request_of, task_size

__all__ = ["TaskFunction", "TaskHandle", "task"]

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("im_task")
_new = object.__new__
_dumps, _PROTOCOL, _FRAME = pickle.dumps, pickle.HIGHEST_PROTOCOL, pickle.FRAME[0]  # as CallTemplate pickles
#: A signature not looked up yet (None means: it cannot be, so calls are not checked).
_UNKNOWN: Any = object()


@dataclass(frozen=True)
class TaskHandle:
    """What calling a task returns: where and when the call will run.

    Attributes:
        name: The task's name (given, or chosen by the queue; None if the queue did not say).
        queue: The queue it went to.
        url: The endpoint path it will be POSTed to.
        eta: When it is due (aware UTC), or None for as soon as possible.
    """

    name: str | None
    queue: str
    url: str
    eta: dt.datetime | None


def _handle_of(fields: dict[str, Any]) -> TaskHandle:
    """``TaskHandle(**fields)`` at a third of its cost (a frozen dataclass sets its fields one by one).

    The handle keeps ``fields`` as its own.
    """
    return instance_of(TaskHandle, fields)


class TaskFunction(TaskWrapper, Generic[P, R]):
    """A callable whose calls are enqueued as tasks instead of run.

    Made by :func:`task`. Calling it serialises the call, signs it and
    enqueues it, returning a :class:`TaskHandle`; the function runs later in
    the task endpoint. Its options and URL are fixed when it is made.

    Attributes:
        func: The wrapped callable.
        options: The task options.
        url: The endpoint path its calls are POSTed to.
    """

    func: Callable[P, R]

    def __init__(self, func: Callable[P, R], options: TaskOptions) -> None:
        if not callable(func):
            raise ConfigurationError(f"@task needs a callable, not {type(func).__name__}.")
        # Copy the name and docstring only: the callable's own attributes (a class's methods, an object's
        # fields) must not shadow func, options, url, run or using.
        functools.update_wrapper(self, func, updated=())
        self.func = func
        self.options = options
        self.url = options.url or f"{get_taskroute()}/{task_path(func, options.logname)}"
        if options.headers:
            _check_headers_fit(self.url, options.headers)
        self._signature: inspect.Signature | None = _UNKNOWN  # looked up at the first call, then kept
        self._bound_signature: inspect.Signature | None = _UNKNOWN  # the same less its first parameter
        self._checker: Callable[..., bool] | None = _UNKNOWN  # binds arguments as the signature does, fast
        self._bound_checker: Callable[..., bool] | None = _UNKNOWN
        # What every call of this task shares under the settings in force (_Plan), in a box that the
        # TaskFunctions a method's __get__ makes share (see __get__).
        self._plans: list[_Plan | None] = [None]
        self._bound_plans: list[_Plan | None] = [None]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Enqueues a call of the function with these arguments.

        Returns:
            Where and when the call will run.

        Raises:
            EnqueueError: The call could not be serialised or enqueued (with
                ``TaskAlreadyExistsError``, ``TaskTooLargeError`` and
                ``BadTransactionStateError`` as the specific cases).
        """
        plan = self._plans[0]
        # The common call (see _Plan.fits), under the settings its plan was made with (else the general path
        # makes the plan again): its task made as _request makes it, with fewer steps.
        if (
            plan is not None
            and plan.fits is not None
            and plan.settings is STATE.settings
            and plan.keyring is STATE.keyring
        ):
            try:
                # The template names this function by module and name: right only while that name holds it.
                common = (
                    plan.fits(*args, **kwargs)
                    and plan.namespace[plan.attribute] is self
                    and sys.modules[plan.module_name] is plan.module
                )
            except (TypeError, KeyError):  # arguments that do not fit (the general way says why), or no such name
                common = False
            if common:
                # plan.template.arguments(args, kwargs), inline (arguments of plain types always pickle)
                pair = _dumps((args, kwargs), _PROTOCOL)
                arguments = pair[11:-3] if pair[2] == _FRAME else pair[2:-3]
                body = plan.direct.seal_now(arguments, time.time())  # type: ignore[union-attr]
                transport = STATE.transport or get_transport()
                if plan.size + len(body) <= transport.max_task_size:  # else to the payload store, the general way
                    fields = plan.fields.copy()
                    fields["body"], fields["headers"] = body, plan.headers.copy()
                    try:  # its queue, URL and name were checked with the plan, its size above
                        name = transport._enqueue_built(fields)
                    except Exception as exc:
                        return self._recover(exc, request_of(fields), transport, None)
                    handle: TaskHandle = _new(TaskHandle)  # _handle_of(), inline: its fields set in place
                    fields = handle.__dict__
                    fields.update(plan.handle)
                    fields["name"] = name
                    return handle
        return self._enqueue(args, kwargs)

    def _enqueue(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskHandle:
        """What a call does: enqueues the call with these arguments (any call, the first of each plan too)."""
        request, stored = self._request(args, kwargs, _Moment.current())
        transport = STATE.transport or get_transport()
        name: str | None
        try:
            if self.options.transactional:
                name = enqueue_transactional(request, transport)
            else:
                name = transport.enqueue(request)
        except Exception as exc:
            return self._recover(exc, request, transport, stored)
        return self._handle(request, name)

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Enqueues a call of the function without blocking the event loop.

        The call is serialised at once, in the caller's thread (the arguments
        as they are now); the transport's
        :meth:`~im_task.transports.Transport.enqueue_async` sends it (Cloud
        Tasks: its async client; others: ``enqueue`` in a worker thread). A
        ``transactional=True`` task is written to the open transaction's
        outbox in the caller's thread, as a plain call does: the transaction
        belongs to that thread.

        Returns:
            Where and when the call will run.

        Raises:
            EnqueueError: As for a plain call.
        """
        request, stored = self._request(args, kwargs, _Moment.current())
        transport = get_transport()
        name: str | None
        try:
            if self.options.transactional:
                name = enqueue_transactional(request, transport)
            else:
                name = await transport.enqueue_async(request)
        except Exception as exc:
            return self._recover(exc, request, transport, stored)
        return self._handle(request, name)

    def map(self, iterable: Iterable[Any]) -> list[TaskHandle]:
        """Enqueues one call per item, with the item as the only argument, as a batch.

        ``f.map(ids)`` is ``[f(i) for i in ids]`` in one batch: one SQLite
        transaction on the local queue, ``BatchCreateTasks`` on Cloud Tasks.
        The iterable (a generator is fine) is read to the end before any task
        is sent. Each call picks its own queue when the task has several.

        Args:
            iterable: The arguments, one per call.

        Returns:
            The handles, in the order of the items; ``[]`` for no items.

        Raises:
            BulkEnqueueError: Some calls failed (an argument that cannot be
                pickled, a name taken, a task too large, or, on a transport
                that runs tasks inline, the task's own exception); the others
                were enqueued. ``handles`` and ``errors`` tell which.
            ConfigurationError: ``iterable`` is not an iterable of arguments; nothing was enqueued.
            BadTransactionStateError: ``transactional=True`` outside a transaction; nothing was enqueued.
        """
        return self._enqueue_calls([((item,), {}) for item in self._items(iterable, "map")])

    def starmap(self, iterable: Iterable[Iterable[Any]]) -> list[TaskHandle]:
        """Enqueues one call per item, each item being the positional arguments of its call, as a batch.

        ``f.starmap([(1, 2), (3, 4)])`` is ``[f(1, 2), f(3, 4)]`` in one
        batch, as :meth:`map` does it.

        Args:
            iterable: Iterables of positional arguments (tuples, lists), one per call.

        Returns:
            The handles, in the order of the items; ``[]`` for no items.

        Raises:
            BulkEnqueueError: Some calls failed; see :meth:`map`.
            ConfigurationError: ``iterable``, or one of its items, is not an
                iterable of arguments (a string or a mapping is refused); nothing
                was enqueued.
            BadTransactionStateError: ``transactional=True`` outside a transaction; nothing was enqueued.
        """
        calls: list[tuple[tuple[Any, ...], Mapping[str, Any]]] = []
        for index, item in enumerate(self._items(iterable, "starmap")):
            if isinstance(item, (str, bytes, bytearray, Mapping)):
                raise ConfigurationError(
                    f"{self!r}.starmap() takes iterables of positional arguments; item {index} ({type(item).__name__}) "
                    f"would be spread into its {'keys' if isinstance(item, Mapping) else 'characters'}: wrap it in a "
                    f"tuple, ({reprlib.repr(item)},), to pass it as one argument."
                )
            try:
                arguments = iter(item)
            except TypeError:
                raise ConfigurationError(
                    f"{self!r}.starmap() takes iterables of positional arguments, e.g. tuples; item {index} "
                    f"({type(item).__name__}) is not iterable: use .map() for one argument per call."
                ) from None
            calls.append((tuple(arguments), {}))
        return self._enqueue_calls(calls)

    def _items(self, iterable: Any, method: str) -> list[Any]:
        """The items of a bulk call's iterable, read to the end; refuses what is no iterable of arguments."""
        if isinstance(iterable, (str, bytes, bytearray)):
            raise ConfigurationError(
                f"{self!r}.{method}() takes an iterable of arguments, not {type(iterable).__name__} (that would make "
                f"one task per character); pass a list, e.g. [{reprlib.repr(iterable)}] for one task."
            )
        try:
            items = iter(iterable)
        except TypeError:
            raise ConfigurationError(
                f"{self!r}.{method}() takes an iterable of arguments (a list, a generator...), "
                f"not {type(iterable).__name__}."
            ) from None
        return list(items)

    def _enqueue_calls(self, calls: Sequence[tuple[tuple[Any, ...], Mapping[str, Any]]]) -> list[TaskHandle]:
        """Serialises the calls, sends them as one batch and reports each call's fate (``map``, ``starmap``)."""
        if not calls:
            return []
        moment = _Moment.current()
        binder = current_binder() if self.options.transactional else None  # no transaction: raise before any send
        requests: dict[int, TaskRequest] = {}
        stored: dict[int, PayloadReference] = {}
        errors: dict[int, Exception] = {}
        for index, (args, kwargs) in enumerate(calls):
            try:
                requests[index], reference = self._request(args, kwargs, moment)
            except EnqueueError as exc:  # an argument that cannot be pickled fails its own call only
                errors[index] = exc
                continue
            if reference is not None:
                stored[index] = reference
        transport = get_transport()
        batch = list(requests.values())
        results: list[str | Exception | None]
        if binder is not None:  # no binder takes a batch: one outbox row after another, in the same transaction
            results = []
            for request in batch:
                try:
                    results.append(binder.enqueue_on_commit(request, transport))
                except Exception as exc:
                    results.append(exc)
        elif batch:
            try:
                results = transport.enqueue_many(batch)
            except Exception as exc:  # the whole batch failed: each of its calls failed with that error
                results = [exc] * len(batch)
        else:
            results = []
        if len(results) != len(batch):
            raise EnqueueError(
                f"{transport!r}.enqueue_many() broke its contract: it returned {len(results)} results for "
                f"{len(batch)} tasks of {self.url}; which of them were enqueued is unknown."
            )
        handles: list[TaskHandle | None] = [None] * len(calls)
        for (index, request), result in zip(requests.items(), results, strict=True):
            if isinstance(result, Exception):
                error = self._failure(result, request, transport)
                self._drop_refused_payload(error, transport, stored.get(index))
                if self._tolerated(error, request):
                    handles[index] = self._handle(request, request.name)
                else:
                    errors[index] = error
            else:
                handles[index] = self._handle(request, result)
        if errors:
            raise BulkEnqueueError(_bulk_message(self.url, len(calls), errors), handles, dict(sorted(errors.items())))
        return [handle for handle in handles if handle is not None]

    def _request(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], moment: _Moment
    ) -> tuple[TaskRequest, PayloadReference | None]:
        """The task for one call: serialised, signed, with its queue, headers and schedule (every path uses it).

        Returns:
            The task, and the reference to its payload when the payload went to the payload store.

        Raises:
            EnqueueError: The arguments do not fit the function's signature, or the call cannot be serialised.
        """
        options = self.options
        self._check_arguments(args, kwargs)
        plan = self._plan(moment)
        template = plan.template
        # The template refers to this function by module and name: right only while that name holds it
        # (a reload, a monkeypatch or mock.patch rebinds it; then __reduce__ chooses, per call).
        if template is not None and all_atomic(args, kwargs) and _importable(self):
            payload = template.dumps(args, kwargs)
        else:
            payload = dumps_parts(self, args, kwargs, plan.meta)
        queue = plan.queue or options.pick_queue(moment.settings.default_queue, random.choice)
        if plan.scheduled:
            schedule_time = options.schedule_time(moment.now)
            due = None if schedule_time is None else schedule_time.timestamp()
        else:
            schedule_time = due = None
        sealer = plan.sealers.get(queue) or plan.sealer(queue)
        body = sealer.seal(payload, now=moment.time, due=due)
        fields = plan.fields.copy()
        fields["queue"], fields["body"], fields["headers"] = queue, body, plan.headers.copy()
        if schedule_time is not None:
            fields["schedule_time"] = schedule_time
        request = request_of(fields)
        if plan.size + len(body) <= (STATE.transport or get_transport()).max_task_size:
            return request, None  # the common case: it travels inline
        binding = sealer.binding_of(body)
        return _offload_if_large(request, payload, moment.keyring, binding, in_transaction=options.transactional)

    def _plan(self, moment: _Moment) -> _Plan:
        """What every call shares under the settings of ``moment``: made at the first call, again when they change."""
        plans = self._plans
        plan = plans[0]
        if plan is None or plan.settings is not moment.settings or plan.keyring is not moment.keyring:
            plan = plans[0] = _Plan(self, moment.settings, moment.keyring)
        return plan

    def _check_arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        """Refuses, at the call, arguments that would make the task fail with a ``TypeError`` when it runs.

        Raises:
            EnqueueError: Saying which argument does not fit, and what to use for a ``deferred`` habit.
        """
        checker = self._checker
        if checker is _UNKNOWN:
            if self._signature is _UNKNOWN:
                self._signature = _signature_of(self.func)
            checker = self._checker = _checker_of(self._signature)
        given = {**kwargs, "headers": None} if self.options.includeheaders else kwargs
        if checker is not None:
            try:
                checker(*args, **given)
                return
            except TypeError:
                pass  # the signature's own binding says why
        signature = self._signature
        if signature is None:
            return
        try:
            signature.bind(*args, **given)
        except TypeError as exc:
            raise EnqueueError(_misfit_message(self, signature, kwargs, exc)) from None

    def _tolerated(self, error: Exception, request: TaskRequest) -> bool:
        """Whether a failure is a taken name that ``raise_if_exists=False`` lets pass (logged at info)."""
        if self.options.raise_if_exists or not isinstance(error, TaskAlreadyExistsError) or request.name is None:
            return False
        logger.info(
            "Task %s already exists on queue %s; not enqueued again (raise_if_exists=False).",
            request.name,
            request.queue,
        )
        return True

    def _handle(self, request: TaskRequest, name: str | None) -> TaskHandle:
        return _handle_of({"name": name, "queue": request.queue, "url": self.url, "eta": request.schedule_time})

    def _recover(
        self, exc: Exception, request: TaskRequest, transport: Transport, stored: PayloadReference | None
    ) -> TaskHandle:
        """The handle of a call whose send failed in a tolerated way (``raise_if_exists=False``), or the error raised.

        Raises:
            Exception: The failure, as :meth:`_failure` maps it.
        """
        error = self._failure(exc, request, transport)
        self._drop_refused_payload(error, transport, stored)
        if self._tolerated(error, request):
            return self._handle(request, request.name)
        if error is exc:
            raise exc
        raise error from exc

    def _drop_refused_payload(self, error: Exception, transport: Transport, stored: PayloadReference | None) -> None:
        """Deletes the stored payload of a call the queue surely refused (else no task would ever delete it).

        Only for refusals that mean no task was made (a name taken, a task too large, no such queue), never for
        an error that may hide a created task (a lost answer): that task needs its payload. A transactional
        call's payload is left to its transaction (a rollback removes it; a commit sends it later).
        """
        if stored is None or self.options.transactional or transport.runs_inline:
            return
        if not isinstance(error, (TaskAlreadyExistsError, TaskTooLargeError, UnknownQueueError)):
            return
        try:
            store = get_payload_store()
            if store.name == stored.store:
                store.delete(stored.key)
        except Exception:
            logger.warning("Could not delete the stored payload %s of a refused task.", stored.key, exc_info=True)

    def _failure(self, exc: Exception, request: TaskRequest, transport: Transport) -> Exception:
        """What the caller sees for a failed enqueue: the library's errors, and an inline task's own, as they are."""
        if isinstance(exc, Error) or transport.runs_inline:  # an inline task ran and raised: its own exception
            return exc
        # a transport broke its contract; keep the error tree whole
        error = EnqueueError(f"Could not enqueue {self.url} on queue {request.queue!r}: {exc}")
        error.__cause__ = exc
        return error

    def using(self, **options: Any) -> TaskFunction[P, R]:
        """A copy with some options changed, for one call site.

        ``countdown`` clears an ``eta`` of the original and the other way round.

        Raises:
            ConfigurationError: For an unknown option or a bad value.
        """
        copy = TaskFunction(self.func, TaskOptions.from_kwargs(options, base=self.options))
        copy._signature, copy._checker = self._signature, self._checker
        return copy

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Runs the function here and now, without a queue."""
        return self.func(*args, **kwargs)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        bound = TaskFunction(self.func.__get__(instance, owner), self.options)
        bound.url = self.url  # the route was fixed when the method was decorated
        if self._bound_signature is _UNKNOWN:  # one lookup per method, not one per attribute access
            self._bound_signature = _without_first_parameter(_signature_of(self.func))
            self._bound_checker = _checker_of(self._bound_signature)
        bound._signature, bound._checker = self._bound_signature, self._bound_checker
        bound._plans = self._bound_plans  # what its calls share does not depend on the instance
        return bound

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference whenever the wrapped function can be found again by name (at module level, or as a
        # method of the bound object's class), so that its code and the module globals it uses are not copied
        # into the task; by value (cloudpickle) otherwise: nested functions, closures, lambdas.
        qualname = getattr(self, "__qualname__", "")
        if _importable(self):
            return (_import_task_function, (self.__module__, qualname))
        original = _lookup(self.__module__, qualname)
        if isinstance(original, TaskFunction) and original.func is self.func:
            return (_restore_copy, (self.__module__, qualname, self.options, self.url))
        owner, inner = getattr(self.func, "__self__", None), getattr(self.func, "__func__", None)
        if owner is not None and inner is not None:
            declared = inspect.getattr_static(type(owner), inner.__name__, None)
            if isinstance(declared, TaskFunction) and declared.func is inner:
                return (_restore_bound, (owner, inner.__name__, self.options, self.url))
        return (TaskFunction, (self.func, self.options))

    def __repr__(self) -> str:
        return f"<TaskFunction {self.url}>"


class _Moment:
    """What the calls enqueued together share: the time their countdown starts, the settings and the keyring.

    Attributes:
        time: When, in seconds since the epoch.
        settings: The settings in force.
        keyring: The keyring that signs.
    """

    __slots__ = ("keyring", "settings", "time")

    def __init__(self, time: float, settings: Settings, keyring: Keyring) -> None:
        self.time, self.settings, self.keyring = time, settings, keyring

    @classmethod
    def current(cls) -> _Moment:
        """Now, with the settings in force.

        Raises:
            ConfigurationError: No secret to sign with (in production).
        """
        # Read without the lock once resolved (one reference each): configure() sets them to None, and the
        # look-ups below resolve them again under the lock. A keyring is published only after the settings it
        # goes with (see State.restore), so one read while the settings read are still in force goes with them.
        settings, keyring = STATE.settings, STATE.keyring
        if settings is None or keyring is None or STATE.settings is not settings:
            settings, keyring = get_settings(), get_keyring()
        return cls(time.time(), settings, keyring)

    @property
    def now(self) -> dt.datetime:
        """:attr:`time` as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.time, dt.timezone.utc)


class _Plan:
    """What every call of one task function shares under one set of settings and keyring, made once.

    Attributes:
        settings: The settings it was made under.
        keyring: The keyring it signs with.
        meta: What the payload tells the endpoint: ``(includeheaders, retry_limit, description)``.
        template: The calls' payloads with their constant part pickled, when the task function pickles by
            reference (it is importable by its module and name); None otherwise.
        queue: The queue of every call, or None when each call picks one of several.
        scheduled: Whether calls have a schedule time (``eta`` or ``countdown``).
        headers: The request headers of every call (copied per call).
        fields: The fields of every call's :class:`~im_task.transports.TaskRequest`, less those set per call.
        size: The size of a call's task less its body (method, URL, headers; see ``task_size``).
        sealers: A :class:`~im_task.envelope.TaskSealer` per queue.
        direct: The sealer of the common calls, which ``__call__`` makes itself, made around the template's
            constant parts (it takes the pickled arguments alone); None when this task function's calls are
            not such calls.
        fits: Whether a call is a common one, called with its arguments (None with ``direct``): it raises
            ``TypeError`` for arguments that do not fit the signature (as :meth:`TaskFunction._check_arguments`
            finds), else says whether every argument is of a plain type (``all_atomic``). The common call: of a
            task function that pickles by reference (a template, the function found in its module under its
            own name, which ``__call__`` checks per call), with arguments of plain types, on one queue, due
            now, not transactional, without ``includeheaders``, with a queue, URL and name every transport
            accepts, and a signature a checker expresses (or none known); any other call takes the general way.
        module_name: The module the template names the function by.
        module: That module, as it was imported when the plan was made.
        attribute: The name the template names the function by, in the module.
        namespace: The module's globals, where the function must still be found under that name.
        handle: The fields of a call's :class:`TaskHandle`, less its name.
    """

    __slots__ = (
        "attribute",
        "direct",
        "fields",
        "fits",
        "handle",
        "headers",
        "keyring",
        "meta",
        "module",
        "module_name",
        "namespace",
        "own_headers",
        "path",
        "queue",
        "scheduled",
        "sealers",
        "settings",
        "size",
        "template",
    )

    def __init__(self, function: TaskFunction[Any, Any], settings: Settings, keyring: Keyring) -> None:
        options = function.options
        self.settings, self.keyring, self.path = settings, keyring, function.url
        self.meta = (options.includeheaders, _endpoint_retry_limit(options), function.url)
        self.template: CallTemplate | None = None  # for a task function that pickles by reference
        if function.__reduce__()[0] is _import_task_function:
            with contextlib.suppress(ValueError):  # a callable that pickles with a memo: no template
                self.template = CallTemplate(function, self.meta)
        queue = settings.default_queue if options.queue is None else options.queue
        self.queue: str | None = queue if isinstance(queue, str) else None  # several: one is picked per call
        self.scheduled = options.eta is not None or bool(options.countdown)
        self.own_headers: Mapping[str, str] = options.headers or {}
        self.headers = {"Content-Type": CONTENT_TYPE, **self.own_headers}
        self.size = len("POST") + len(function.url) + sum(len(k) + len(v) for k, v in self.headers.items())
        self.sealers: dict[str, TaskSealer] = {}
        self.fields: dict[str, Any] = {  # of the TaskRequest; queue, body and headers are set per call
            "queue": None,
            "url": function.url,
            "body": b"",
            "headers": None,
            "name": options.name,
            "schedule_time": None,
            "target": options.target,
            "dispatch_deadline": options.dispatch_deadline,
            "retry_options": options.retry_options,
        }
        # The common call, which TaskFunction.__call__ makes itself (see fits above).
        self.direct: TaskSealer | None = None  # the sealer of such calls, when this task function's are
        self.fits: Callable[..., bool] | None = None
        self.module_name, self.attribute = str(function.__module__), str(getattr(function, "__qualname__", ""))
        self.module = sys.modules.get(self.module_name)
        self.namespace: Mapping[str, Any] = getattr(self.module, "__dict__", {})
        common = not (self.scheduled or options.transactional or options.includeheaders or "." in self.attribute)
        found = self.namespace.get(self.attribute) is function
        fits = _fits_of(function)
        if self.template is not None and self.queue is not None and common and found and fits and self._checked():
            self.fields["queue"] = self.queue
            self.direct = self.sealer(self.queue, around=self.template.around)
            self.fits = fits
        # The fields of a call's TaskHandle but its name.
        self.handle: dict[str, Any] = {"name": None, "queue": self.queue, "url": function.url, "eta": None}

    def _checked(self) -> bool:
        """Whether every transport's checks accept the queue, URL and name of the calls (their size aside)."""
        fields = self.fields
        try:
            check_fields(self.queue, fields["url"], fields["name"])
        except EnqueueError:
            return False  # the general way: the transport refuses each call, saying why
        return True

    def sealer(self, queue: str, *, around: tuple[bytes, bytes] | None = None) -> TaskSealer:
        """The sealer of the calls sent to ``queue`` (kept in :attr:`sealers`, unless made ``around``)."""
        sealer = TaskSealer(
            self.keyring,
            path=self.path,
            queue=queue,
            headers=self.own_headers,
            lifetime=self.settings.envelope_lifetime,
            around=around or (b"", b""),
        )
        if around is None:
            self.sealers[queue] = sealer
        return sealer


def _fits_of(function: TaskFunction[Any, Any]) -> Callable[..., bool] | None:
    """The ``fits`` of a plan of ``function`` (see ``_Plan``): its checker, or None when its calls need more."""
    checker, signature = function._checker, function._signature
    if checker is _UNKNOWN or signature is _UNKNOWN:
        return None  # not looked up yet (a plan is made after a call's arguments were checked: never so)
    if checker is not None:
        return checker
    if signature is None:  # unknown: calls are not checked
        return _plain_arguments
    return None  # a signature no checker can express: Signature.bind, the general way


def _plain_arguments(*args: Any, **kwargs: Any) -> bool:
    """Whether every argument is of a plain type: the ``fits`` of a callable whose signature is unknown."""
    return all_atomic(args, kwargs)


def _check_headers_fit(url: str, headers: Mapping[str, str]) -> None:
    """Refuses headers too large for the signed binding of any envelope (see ``largest_binding_size``).

    Raises:
        ConfigurationError: Saying the limit and the size.
    """
    # The JSON of a character takes 12 bytes at most (a surrogate pair): the exact size only near the limit.
    rough = 12 * (len(url) + sum(len(name) + len(value) + 6 for name, value in headers.items())) + 512
    if rough <= MAX_BINDING_SIZE:
        return
    size = largest_binding_size(url, headers)
    if size > MAX_BINDING_SIZE:
        raise ConfigurationError(
            f"The headers of {url} take too much room: with them the signed binding of a task would take up to "
            f"{size:,} bytes, and it can take at most {MAX_BINDING_SIZE:,} (64 KiB). Pass large values as "
            "arguments of the function (which travel in the payload), not as headers=."
        )


def _checker_of(signature: inspect.Signature | None) -> Callable[..., bool] | None:
    """A function that takes the arguments ``signature`` takes, to check a call's arguments.

    Binding arguments to a real function's parameters is done by the interpreter, about twenty times as
    fast as :meth:`inspect.Signature.bind`; it raises ``TypeError`` in the same cases. None when the
    signature is unknown or cannot be written as a ``def`` (then ``bind`` checks each call). Once bound,
    it says whether every argument is of a plain type (:func:`~im_task.serialization.all_atomic`, which the
    common call needs): each argument is bound to one parameter, and a parameter not given has the plain
    default None.

    Where the two differ, the checker does as the real call does: ``def f(a=1, /, **kw)`` takes
    ``f(a=5)`` (``a`` goes to ``kw``), which ``Signature.bind`` refuses before Python 3.13.
    """
    if signature is None:
        return None
    parameters = list(signature.parameters.values())
    names = {parameter.name for parameter in parameters}
    # The checker's own globals, under names no parameter shadows.
    plain_type, plain_types, plain_values = (_unused(name, names) for name in ("_type", "_plain", "_all_plain"))
    parts: list[str] = []
    tests: list[str] = []
    star = False
    for index, parameter in enumerate(parameters):
        name = parameter.name
        if not _spelled_as_is(name):
            return None
        kind = parameter.kind
        if kind is parameter.VAR_POSITIONAL:
            parts.append(f"*{name}")
            tests.append(f"{plain_values}({name})")
            star = True
        elif kind is parameter.VAR_KEYWORD:
            parts.append(f"**{name}")
            tests.append(f"{plain_values}({name}.values())")
        else:
            tests.append(f"{plain_type}({name}) in {plain_types}")
            if kind is parameter.KEYWORD_ONLY and not star:
                parts.append("*")
                star = True
            parts.append(name if parameter.default is parameter.empty else f"{name}=None")
            last_positional_only = kind is parameter.POSITIONAL_ONLY and (
                index + 1 == len(parameters) or parameters[index + 1].kind is not parameter.POSITIONAL_ONLY
            )
            if last_positional_only:
                parts.append("/")
    namespace: dict[str, Any] = {plain_type: type, plain_types: ATOMIC_TYPES, plain_values: _all_plain}
    source = f"def check({', '.join(parts)}):\n    return {' and '.join(tests) or 'True'}"
    try:
        exec(source, namespace)  # only identifiers: checked above
    except SyntaxError:  # a signature no def can have (a __signature__ made by hand): bind checks each call
        return None
    checker: Callable[..., bool] = namespace["check"]
    return checker


def _unused(name: str, taken: set[str]) -> str:
    """``name``, with underscores added until it is none of ``taken``."""
    while name in taken:
        name += "_"
    return name


def _all_plain(values: Iterable[Any]) -> bool:
    """Whether every value is of a plain type (``ATOMIC_TYPES``)."""
    atomic = ATOMIC_TYPES
    for value in values:  # noqa: SIM110 - a loop costs less than any() over a generator
        if type(value) not in atomic:
            return False
    return True


def _spelled_as_is(name: str) -> bool:
    """Whether ``name`` is a parameter name a ``def`` takes as it is written.

    The parser folds identifiers to NFKC (``ﬁle`` is ``file``), so a name that is not in that form
    would bind other keywords than the signature does; ``__debug__`` and keywords cannot be assigned.
    """
    if not name.isidentifier() or keyword.iskeyword(name) or name == "__debug__":
        return False
    if name.isascii():
        return True
    import unicodedata  # only for names beyond ASCII, which NFKC may change

    return unicodedata.normalize("NFKC", name) == name


def _signature_of(func: Any) -> inspect.Signature | None:
    """The signature calls are checked against, or None when it cannot be known (some builtins).

    A wrapper's own signature, not its ``__wrapped__`` one: decorators that supply an argument
    (``functools.wraps`` around ``f(db, x)`` called as ``f(x)``) must not be refused.
    """
    try:
        return inspect.signature(func, follow_wrapped=False)
    except (TypeError, ValueError):
        return None


def _without_first_parameter(signature: inspect.Signature | None) -> inspect.Signature | None:
    """A function's signature as its bound method has it; None when unknown or when there is no first parameter."""
    if signature is None:
        return None
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (parameters[0].POSITIONAL_ONLY, parameters[0].POSITIONAL_OR_KEYWORD):
        return None  # (*args) or nothing: let the call through unchecked
    return signature.replace(parameters=parameters[1:])


def _misfit_message(
    function: TaskFunction[Any, Any], signature: inspect.Signature, kwargs: Mapping[str, Any], exc: TypeError
) -> str:
    """Why a call's arguments do not fit, and what a ``deferred`` habit (``_countdown=60``) should become."""
    name = getattr(function.func, "__qualname__", None) or repr(function.func)
    message = f"Cannot enqueue {function.url}: the arguments do not fit {name}{signature}: {exc}."
    habits = {key: value for key, value in kwargs.items() if key.startswith("_") and key[1:] in OPTION_NAMES}
    if habits:
        as_options = ", ".join(f"{key[1:]}={value!r}" for key, value in habits.items())
        as_deferred = ", ".join(f"{key}={value!r}" for key, value in habits.items())
        message += (
            f" {', '.join(habits)} is how App Engine's deferred.defer() takes task options; a task takes them as "
            f"options: {name}.using({as_options})(...), or im_task.deferred.defer({name}, ..., {as_deferred})."
        )
    if function.options.includeheaders and "headers" not in signature.parameters:
        message += " With includeheaders=True the function must accept headers=."
    return message


#: Failures named in a BulkEnqueueError's message; the others are counted.
_FAILURES_SHOWN = 3


def _bulk_message(url: str, total: int, errors: Mapping[int, Exception]) -> str:
    shown = "; ".join(
        f"call {index}: {type(error).__name__}: {error}" for index, error in sorted(errors.items())[:_FAILURES_SHOWN]
    )
    more = len(errors) - _FAILURES_SHOWN
    return (
        f"{len(errors)} of {total} calls of {url} failed ({total - len(errors)} enqueued): {shown}"
        + (f"; and {more} more" if more > 0 else "")
        + ". See .handles and .errors."
    )


def _endpoint_retry_limit(options: TaskOptions) -> int | None:
    """The retry limit the endpoint enforces: only when no age limit must be reached too (the queue's part)."""
    retry = options.retry_options
    if retry is None or retry.task_age_limit:
        return None
    return retry.task_retry_limit


def _offload_if_large(
    request: TaskRequest, payload: bytes, keyring: Keyring, binding: Binding, *, in_transaction: bool
) -> tuple[TaskRequest, PayloadReference | None]:
    """The task as sent: over the transport's inline limit, its payload goes to the payload store.

    The task then carries a signed reference (store, key, SHA-256, size)
    instead; its name, schedule, queue, target and headers stay. A
    ``transactional=True`` task's payload is written in the open transaction
    (:class:`~im_task.stores.NdbPayloadStore` joins an ndb one), so a rollback
    leaves nothing; any other task's payload is written outside it, since the
    task is sent at once and may run before that transaction commits.

    Returns:
        The task as sent, and the reference to its stored payload (None when it travels inline).

    Raises:
        EnqueueError: The payload store failed (``ConfigurationError`` when it cannot be made).
    """
    if task_size(request) <= get_transport().max_task_size or get_settings().payload_store == NO_STORE:
        return request, None  # fits, or payload stores are off: the transport refuses it with TaskTooLargeError
    try:
        reference = store_payload(payload, in_transaction=in_transaction)
    except Error:
        raise
    except Exception as exc:
        raise EnqueueError(
            f"Could not store the {len(payload)}-byte payload of {request.url} in the payload store: {exc}"
        ) from exc
    return replace(request, body=seal_reference(reference, keyring, binding)), reference


def _lookup(module_name: str | None, qualname: str) -> Any:
    """What an already imported module holds at ``qualname``, or None."""
    found: Any = sys.modules.get(module_name) if module_name and "<" not in qualname else None
    for part in qualname.split(".") if found is not None else ():
        found = getattr(found, part, None)
    return found


def _importable(obj: TaskFunction[Any, Any]) -> bool:
    return _lookup(getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")) is obj


def _import_task_function(module_name: str, qualname: str) -> TaskFunction[Any, Any]:
    found: Any = sys.modules.get(module_name)
    if found is None or getattr(getattr(found, "__spec__", None), "_initializing", False):
        found = importlib.import_module(module_name)  # not imported yet, or being imported by another thread
    for part in qualname.split("."):
        found = getattr(found, part)
    if not isinstance(found, TaskFunction):
        raise TypeError(f"{module_name}.{qualname} is no longer a task function.")
    return found


def _with_options(original: TaskFunction[Any, Any], options: TaskOptions, url: str) -> TaskFunction[Any, Any]:
    if original.options == options and original.url == url:
        return original
    copy = TaskFunction(original.func, options)
    copy.url = url
    return copy


def _restore_copy(module_name: str, qualname: str, options: TaskOptions, url: str) -> TaskFunction[Any, Any]:
    return _with_options(_import_task_function(module_name, qualname), options, url)


def _restore_bound(owner: Any, name: str, options: TaskOptions, url: str) -> TaskFunction[Any, Any]:
    bound = getattr(owner, name)
    if not isinstance(bound, TaskFunction):
        raise TypeError(f"{type(owner).__qualname__}.{name} is no longer a task function.")
    return _with_options(bound, options, url)


@overload
def task(f: Callable[P, R], /, **options: Any) -> TaskFunction[P, R]: ...
@overload
def task(f: None = None, /, **options: Any) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...
def task(f: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Makes a callable run as a task when it is called.

    Works bare (``@task``), with options (``@task(queue="mail", countdown=5)``)
    and as a factory (``task(send, queue="mail")(to, body)``). Any callable
    works: top-level, nested, closures, lambdas, recursive functions, bound
    methods, callable objects, builtins.

    Args:
        f: The callable, when used bare or as a factory.
        **options: Task options: ``queue``, ``countdown``, ``eta``, ``name``,
            ``target``, ``retry_options``, ``headers``, ``url``,
            ``dispatch_deadline``, ``transactional``, ``includeheaders``,
            ``logname``, ``raise_if_exists``, ``parent``.

    Returns:
        A :class:`TaskFunction`, or a decorator making one.

    Raises:
        ConfigurationError: For an unknown option or a bad value, at once.

    Calling the result checks the arguments against the callable's signature
    (looked up once): arguments that do not fit are an ``EnqueueError`` at the
    call, not a ``TypeError`` in the task later.

    Example:
        >>> from im_task import task
        >>> @task(queue="default", countdown=5)
        ... def send_reminder(user_id):
        ...     ...
    """
    parsed = TaskOptions.from_kwargs(options)
    if f is None:
        return lambda func: TaskFunction(func, parsed)
    return TaskFunction(f, parsed)
