"""The ``@task`` decorator, the ``TaskFunction`` it returns, and ``TaskHandle``."""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import inspect
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from im_task.config import get_keyring, get_settings
from im_task.envelope import CONTENT_TYPE, seal
from im_task.errors import ConfigurationError, EnqueueError, Error
from im_task.options import TaskOptions
from im_task.routing import get_taskroute, task_path
from im_task.runtime import get_transport
from im_task.serialization import TaskCall, TaskWrapper, dumps_call
from im_task.transactions import enqueue_transactional
from im_task.transports.base import TaskRequest, Transport

__all__ = ["TaskFunction", "TaskHandle", "task"]

P = ParamSpec("P")
R = TypeVar("R")


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

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Enqueues a call of the function with these arguments.

        Returns:
            Where and when the call will run.

        Raises:
            EnqueueError: The call could not be serialised or enqueued (with
                ``TaskAlreadyExistsError``, ``TaskTooLargeError`` and
                ``BadTransactionStateError`` as the specific cases).
        """
        options = self.options
        settings = get_settings()
        call = TaskCall(
            func=self,
            args=args,
            kwargs=kwargs,
            includeheaders=options.includeheaders,
            retry_limit=_endpoint_retry_limit(options),
            description=self.url,
        )
        body = seal(dumps_call(call), get_keyring())
        schedule_time = options.schedule_time(dt.datetime.now(dt.timezone.utc))
        request = TaskRequest(
            queue=options.pick_queue(settings.default_queue, random.choice),
            url=self.url,
            body=body,
            headers={"Content-Type": CONTENT_TYPE, **(options.headers or {})},
            name=options.name,
            schedule_time=schedule_time,
            target=options.target,
            dispatch_deadline=options.dispatch_deadline,
            retry_options=options.retry_options,
        )
        transport = get_transport()
        try:
            enqueue = enqueue_transactional if options.transactional else _enqueue_now
            name = enqueue(request, transport)
        except Error:
            raise
        except Exception as exc:
            if transport.runs_inline:  # the task itself ran and raised: the caller sees its own exception
                raise
            # a transport broke its contract; keep the error tree whole
            raise EnqueueError(f"Could not enqueue {self.url} on queue {request.queue!r}: {exc}") from exc
        return TaskHandle(name=name, queue=request.queue, url=self.url, eta=schedule_time)

    def using(self, **options: Any) -> TaskFunction[P, R]:
        """A copy with some options changed, for one call site.

        ``countdown`` clears an ``eta`` of the original and the other way round.

        Raises:
            ConfigurationError: For an unknown option or a bad value.
        """
        return TaskFunction(self.func, TaskOptions.from_kwargs(options, base=self.options))

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Runs the function here and now, without a queue."""
        return self.func(*args, **kwargs)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        bound = TaskFunction(self.func.__get__(instance, owner), self.options)
        bound.url = self.url  # the route was fixed when the method was decorated
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


def _endpoint_retry_limit(options: TaskOptions) -> int | None:
    """The retry limit the endpoint enforces: only when no age limit must be reached too (the queue's part)."""
    retry = options.retry_options
    if retry is None or retry.task_age_limit:
        return None
    return retry.task_retry_limit


def _enqueue_now(request: TaskRequest, transport: Transport) -> str | None:
    return transport.enqueue(request)


def _lookup(module_name: str | None, qualname: str) -> Any:
    """What an already imported module holds at ``qualname``, or None."""
    found: Any = sys.modules.get(module_name) if module_name and "<" not in qualname else None
    for part in qualname.split(".") if found is not None else ():
        found = getattr(found, part, None)
    return found


def _importable(obj: TaskFunction[Any, Any]) -> bool:
    return _lookup(getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")) is obj


def _import_task_function(module_name: str, qualname: str) -> TaskFunction[Any, Any]:
    found: Any = importlib.import_module(module_name)
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
            ``logname``.

    Returns:
        A :class:`TaskFunction`, or a decorator making one.

    Raises:
        ConfigurationError: For an unknown option or a bad value, at once.

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
