"""Serialising a call with cloudpickle, and reading it back."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from im_task.errors import EnqueueError

__all__ = ["FORMAT", "TaskCall", "TaskWrapper", "dumps_call", "loads_call"]

FORMAT = 1


class TaskWrapper:
    """Base of what ``@task`` returns: a callable whose call enqueues the wrapped one, ``func``.

    The endpoint runs ``func`` itself when a payload's callable is a wrapper.
    """

    func: Callable[..., Any]


def _cloudpickle() -> ModuleType:
    """cloudpickle, imported when the first task is serialised (it costs a quarter of a Flask import)."""
    import cloudpickle

    module: ModuleType = cloudpickle
    return module


@dataclass(frozen=True)
class TaskCall:
    """A call to make in a task, with what the endpoint needs to know of it.

    Attributes:
        func: The callable.
        args: Positional arguments.
        kwargs: Keyword arguments.
        includeheaders: Whether to pass the request headers as ``headers=``.
        retry_limit: The task's ``task_retry_limit``, enforced by the endpoint.
        description: A readable name of the callable, for logs.
    """

    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    includeheaders: bool = False
    retry_limit: int | None = None
    description: str = ""


def dumps_call(call: TaskCall) -> bytes:
    """Serialises a call.

    Args:
        call: The call.

    Returns:
        The payload bytes.

    Raises:
        EnqueueError: Naming the callable or the argument that cannot be
            pickled, so the error shows at the call and not in the handler.
    """
    meta = (call.includeheaders, call.retry_limit, call.description)
    try:
        data: bytes = _cloudpickle().dumps(
            (FORMAT, call.func, call.args, dict(call.kwargs), meta), protocol=pickle.HIGHEST_PROTOCOL
        )
    except Exception as exc:
        raise EnqueueError(_what_cannot_be_pickled(call, exc)) from exc
    return data


def loads_call(payload: bytes) -> TaskCall:
    """Deserialises a verified payload.

    Args:
        payload: Bytes from :func:`dumps_call`, whose signature was checked.

    Returns:
        The call.

    Raises:
        Exception: Whatever unpickling raises when the code has changed since
            the task was enqueued; the caller treats it as undecodable.
    """
    fmt, func, args, kwargs, meta = pickle.loads(payload)
    if fmt != FORMAT:
        raise ValueError(f"Unknown payload format {fmt!r}.")
    includeheaders, retry_limit, description = meta
    return TaskCall(func, tuple(args), kwargs, includeheaders, retry_limit, description)


def _what_cannot_be_pickled(call: TaskCall, exc: Exception) -> str:
    subject = call.description or repr(call.func)
    candidates: list[tuple[str, Any]] = [("the function", call.func)]
    candidates += [(f"argument {i} ({_short(value)})", value) for i, value in enumerate(call.args)]
    candidates += [(f"keyword argument {key!r} ({_short(value)})", value) for key, value in call.kwargs.items()]
    for label, value in candidates:
        try:
            _cloudpickle().dumps(value)
        except Exception as item_exc:
            return f"Cannot enqueue {subject}: {label} cannot be pickled: {item_exc}"
    return f"Cannot enqueue {subject}: the call cannot be pickled: {exc}"


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 60 else text[:57] + "..."
