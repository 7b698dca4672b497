"""Serialising a call, and reading it back.

A call is pickled with the standard :mod:`pickle` when it can carry it by
reference: module-level functions and classes of importable modules, and
values made of them. Anything that needs its code copied (closures, lambdas,
nested functions, what ``__main__`` defines, modules registered with
``cloudpickle.register_pickle_by_value``), and any value of a type
cloudpickle reduces its own way (bound methods, type variables, code...),
is pickled with cloudpickle. Both make a standard pickle of the same tuple,
which :func:`loads_call` reads with :func:`pickle.loads`.
"""

from __future__ import annotations

import abc
import collections
import copyreg
import dataclasses
import functools
import io
import logging
import pickle
import sys
import types
import typing
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FunctionType, ModuleType
from typing import Any, ClassVar

from im_task._instances import instance_of
from im_task.errors import EnqueueError

__all__ = [
    "ATOMIC_TYPES",
    "FORMAT",
    "CallTemplate",
    "TaskCall",
    "TaskWrapper",
    "all_atomic",
    "dumps_call",
    "dumps_parts",
    "loads_call",
]

FORMAT = 1


class TaskWrapper:
    """Base of what ``@task`` returns: a callable whose call enqueues the wrapped one, ``func``.

    The endpoint runs ``func`` itself when a payload's callable is a wrapper.
    """

    func: Callable[..., Any]


def _cloudpickle() -> ModuleType:
    """cloudpickle, imported when the first task is serialised (it costs a quarter of a Flask import)."""
    import cloudpickle

    global _SPECIAL_TYPES  # noqa: PLW0603 - widened once, with what this cloudpickle adds to the mirror below
    if not _cloudpickles_own_types(cloudpickle) <= _SPECIAL_TYPES:
        _SPECIAL_TYPES = _SPECIAL_TYPES | _cloudpickles_own_types(cloudpickle)
    module: ModuleType = cloudpickle
    return module


def _cloudpickles_own_types(cloudpickle: ModuleType) -> frozenset[type]:
    """The types cloudpickle's pickler reduces its own way (its dispatch table less :mod:`copyreg`'s)."""
    table = getattr(getattr(cloudpickle, "CloudPickler", None), "dispatch_table", {})
    return frozenset(kind for kind in table if isinstance(kind, type) and kind not in copyreg.dispatch_table)


def _odict_view_types() -> set[type]:
    ordered: collections.OrderedDict[Any, Any] = collections.OrderedDict()
    return {type(ordered.keys()), type(ordered.values()), type(ordered.items())}


#: The type parameters cloudpickle leaves to the standard pickle, which writes them by name only (one
#: defined in ``__main__`` cannot be found in another program): :func:`_reduce_type_parameter` copies them.
_TYPE_PARAMETERS: frozenset[type] = frozenset(
    kind for kind in (getattr(typing, "ParamSpec", None), getattr(typing, "TypeVarTuple", None)) if kind is not None
)

#: The types whose values cloudpickle reduces otherwise than the standard pickle: the keys of
#: ``cloudpickle.CloudPickler.dispatch_table`` not in :mod:`copyreg`'s, as of cloudpickle 3.1 (written
#: out, so that the common case does not import cloudpickle; a test checks the installed cloudpickle has
#: no other, and :func:`_cloudpickle` adds any other when it loads). For instance the standard pickle
#: writes a bound method as ``getattr(obj, name)``, wrong when the function is not found on the object
#: under that name, and a ``TypeVar`` as a reference by name, wrong for one ``__main__`` defines.
_CLOUDPICKLE_TYPES: frozenset[type] = frozenset(
    {
        classmethod,
        staticmethod,
        property,
        memoryview,
        io.TextIOWrapper,
        logging.Logger,
        logging.RootLogger,
        types.CellType,
        types.CodeType,
        types.GetSetDescriptorType,
        types.MappingProxyType,
        types.MethodType,
        types.ModuleType,
        weakref.WeakSet,
        typing.TypeVar,
        type({}.keys()),
        type({}.values()),
        type({}.items()),
        abc.abstractclassmethod,
        abc.abstractstaticmethod,
        abc.abstractproperty,
        dataclasses._FIELD_BASE,  # type: ignore[attr-defined]  # the MISSING-like markers, kept identical
        *_odict_view_types(),
    }
)

#: The types whose values :class:`_ReferencePickler` leaves to cloudpickle (with :data:`_TYPE_PARAMETERS`
#: not found by name, which :func:`_value_pickler` copies).
_SPECIAL_TYPES: frozenset[type] = _CLOUDPICKLE_TYPES | _TYPE_PARAMETERS


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
    return dumps_parts(call.func, call.args, call.kwargs, meta)


#: Types whose values the standard pickle writes as they are, with no global to look up (see :func:`all_atomic`).
ATOMIC_TYPES = frozenset({int, float, str, bytes, bool, type(None), complex})


def dumps_parts(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    meta: tuple[bool, int | None, str],
) -> bytes:
    """Serialises a call given as its parts: what :func:`dumps_call` does without making a :class:`TaskCall`.

    Args:
        func: The callable.
        args: Positional arguments.
        kwargs: Keyword arguments.
        meta: ``(includeheaders, retry_limit, description)``.

    Returns:
        The payload bytes.

    Raises:
        EnqueueError: Naming the callable or the argument that cannot be pickled.
    """
    value = (FORMAT, func, args, dict(kwargs), meta)
    buffer = io.BytesIO()
    try:
        _ReferencePickler(buffer, pickle.HIGHEST_PROTOCOL).dump(value)
    except Exception:  # needs cloudpickle (_ByValue), or cannot be pickled at all: cloudpickle tells which
        pass
    else:
        return buffer.getvalue()
    buffer = io.BytesIO()
    try:
        _value_pickler()(buffer, pickle.HIGHEST_PROTOCOL).dump(value)
    except Exception as exc:
        raise EnqueueError(_what_cannot_be_pickled(TaskCall(func, args, kwargs, *meta), exc)) from exc
    return buffer.getvalue()


@functools.cache
def _value_pickler() -> type[pickle.Pickler]:
    """The pickler of cloudpickle, also copying the type parameters it writes by name (:data:`_TYPE_PARAMETERS`)."""
    base: Any = _cloudpickle().CloudPickler

    class ValuePickler(base):  # type: ignore[misc]
        dispatch_table: ClassVar[Mapping[type, Callable[[Any], Any]]] = collections.ChainMap(
            dict.fromkeys(_TYPE_PARAMETERS, _reduce_type_parameter), base.dispatch_table
        )

    pickler: type[pickle.Pickler] = ValuePickler
    return pickler


def _reduce_type_parameter(obj: Any) -> Any:
    """A ``ParamSpec`` or ``TypeVarTuple``: by reference when its module finds it by name, else copied."""
    if _found_by_name(obj, obj.__name__):
        return obj.__name__  # a global, as the standard pickle writes it
    options: dict[str, Any] = {}
    for attribute, option in (
        ("__bound__", "bound"),
        ("__covariant__", "covariant"),
        ("__contravariant__", "contravariant"),
        ("__infer_variance__", "infer_variance"),
    ):
        if getattr(obj, attribute, None):
            options[option] = getattr(obj, attribute)
    if getattr(obj, "has_default", lambda: False)():
        options["default"] = obj.__default__
    return (_make_type_parameter, (type(obj), obj.__name__, options))


def _make_type_parameter(kind: type, name: str, options: dict[str, Any]) -> Any:
    """Makes a copy of a type parameter (what :func:`_reduce_type_parameter` wrote)."""
    return kind(name, **options)


class CallTemplate:
    """The payloads of one callable's calls, its constant part pickled once.

    ``template.dumps(args, kwargs)`` is ``dumps_parts(func, args, kwargs,
    meta)``, read back the same by :func:`pickle.loads`, for a callable that
    pickles by reference (a module-level ``@task`` function) and arguments of
    plain types: only ``(args, kwargs)`` is pickled per call, between the
    opcodes of ``FORMAT``, the callable and ``meta``, pickled when the
    template is made. Those constant opcodes use no memo, so the memo of the
    part pickled per call numbers its entries from 0, as it would alone.

    Args:
        func: The callable.
        meta: ``(includeheaders, retry_limit, description)``.

    Raises:
        ValueError: The callable or ``meta`` do not pickle to plain opcodes
            without a memo (then use :func:`dumps_parts`).
    """

    __slots__ = ("_head", "_tail")

    def __init__(self, func: Callable[..., Any], meta: tuple[bool, int | None, str]) -> None:
        protocol = pickle.HIGHEST_PROTOCOL
        self._head = bytes([pickle.PROTO[0], protocol]) + pickle.MARK + _opcodes(FORMAT) + _opcodes(func)
        self._tail = _opcodes(meta) + pickle.TUPLE + pickle.STOP

    @property
    def around(self) -> tuple[bytes, bytes]:
        """What every payload starts and ends with: ``dumps(args, kwargs)`` is ``start + arguments(...) + end``."""
        return self._head, self._tail

    def dumps(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
        """The payload of one call (arguments of plain types: see :func:`dumps_parts` for the others).

        Raises:
            EnqueueError: The arguments cannot be pickled.
        """
        return b"".join(
            (self._head, self.arguments(args, kwargs if type(kwargs) is dict else dict(kwargs)), self._tail)
        )

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """The part of one call's payload between the two of :attr:`around`: the arguments, pickled.

        Raises:
            EnqueueError: The arguments cannot be pickled.
        """
        try:
            pair = _dumps((args, kwargs), _PROTOCOL)
        except Exception as exc:
            raise EnqueueError(f"Cannot enqueue a call: its arguments cannot be pickled: {exc}") from exc
        # PROTO 5, an optional FRAME, the two values, TUPLE2 MEMOIZE STOP: keep the two values (a slice of
        # a small bytes object costs less than a memoryview of it).
        return pair[11:-3] if pair[2] == _FRAME else pair[2:-3]


def _opcodes(value: object) -> bytes:
    """The opcodes that push ``value`` on the unpickler's stack, with no memo (for :class:`CallTemplate`)."""
    import pickletools  # only when a template is made

    data = pickletools.optimize(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    ops = list(pickletools.genops(data))
    if any(op.name in _MEMO_OPCODES for op, _, _ in ops):
        raise ValueError(f"{value!r} pickles with a memo; no template can hold it.")
    first = 2 if ops[1][0].name == "FRAME" else 1  # after PROTO and its FRAME, if any
    return data[ops[first][2] : ops[-1][2]]  # up to STOP


_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET"})
_dumps = pickle.dumps
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_FRAME = pickle.FRAME[0]


def all_atomic(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """Whether every argument is of a plain type (numbers, strings, bytes, None), as :class:`CallTemplate` needs."""
    atomic = ATOMIC_TYPES
    for item in args:  # a loop: about half the cost of all() over a generator, for the few arguments of a call
        if type(item) not in atomic:
            return False
    for item in kwargs.values():  # noqa: SIM110 - the same
        if type(item) not in atomic:
            return False
    return True


class _ByValue(Exception):
    """A value the standard pickle would write otherwise than cloudpickle (see :class:`_ReferencePickler`)."""


class _ReferencePickler(pickle.Pickler):
    """The standard pickler, refusing (with :class:`_ByValue`) what cloudpickle would write otherwise.

    The standard pickle writes any function or class as a reference to its
    module and name, and checks only that the name finds it again here. That
    is wrong for ``__main__`` (another program's main module runs the task),
    for a module made at run time (no spec: it cannot be imported), and for
    the modules registered with ``cloudpickle.register_pickle_by_value``;
    cloudpickle copies those by value, so they are left to it. So are the
    values of every type cloudpickle's dispatch table reduces its own way
    (:data:`_SPECIAL_TYPES`): its ``reducer_override`` handles classes and
    functions only, and its dispatch table the rest.
    """

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if issubclass(kind, type) or kind is FunctionType:  # what cloudpickle's reducer_override takes
            if not _trusted_reference(obj):
                raise _ByValue(obj)
        elif kind in _SPECIAL_TYPES and not (kind in _TYPE_PARAMETERS and _found_by_name(obj, obj.__name__)):
            raise _ByValue(obj)
        return NotImplemented


def _trusted_reference(obj: FunctionType | type) -> bool:
    return _trusted_module(getattr(obj, "__module__", None))


def _found_by_name(obj: Any, name: str) -> bool:
    """Whether ``obj`` is what its module, one another program can import too, holds at ``name``."""
    module_name = getattr(obj, "__module__", None)
    return _trusted_module(module_name) and getattr(sys.modules[str(module_name)], name, None) is obj


def _trusted_module(module_name: object) -> bool:
    """Whether another program imports the module ``module_name`` as this one did (and none copies it)."""
    if not isinstance(module_name, str) or module_name == "__main__":
        return False
    module = sys.modules.get(module_name)
    if module is None or (getattr(module, "__spec__", None) is None and module_name != "builtins"):
        return False
    registered = sys.modules.get("cloudpickle")  # only cloudpickle's registry can say "by value"
    if registered is not None:
        by_value = getattr(registered, "list_registry_pickle_by_value", None)
        if by_value is not None and any(
            module_name == name or module_name.startswith(name + ".") for name in by_value()
        ):
            return False
    return True


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
    fields = {"func": func, "args": tuple(args), "kwargs": kwargs, "includeheaders": includeheaders}
    fields.update(retry_limit=retry_limit, description=description)
    return instance_of(TaskCall, fields)  # every task request decodes one


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
