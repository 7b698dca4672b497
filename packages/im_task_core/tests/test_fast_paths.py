"""The fast paths of enqueueing and serving (issue 13) give the same results as the general ones.

Each fast path is checked against the general code it stands in for: the
task sealer against ``seal`` with a ``Binding``, the call template and the
standard pickler against cloudpickle, the argument checker against
``inspect.Signature.bind``, the keyed HMAC against :mod:`hmac`.
"""

from __future__ import annotations

import dataclasses
import hmac
import inspect
import io
import itertools
import os
import pickle
import subprocess
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from im_task import ConfigurationError, EnqueueError, TaskAlreadyExistsError, configure, task
from im_task.config import get_keyring, get_settings
from im_task.decorator import _checker_of
from im_task.envelope import (
    BOUND_VERSION,
    MAX_BINDING_SIZE,
    Binding,
    TaskSealer,
    _ids,
    largest_binding_size,
    new_task_id,
    seal,
    unseal,
)
from im_task.errors import EnqueueError as EnqueueErrorClass
from im_task.headers import Headers, TaskHeaders, make_task_headers, queue_headers
from im_task.keys import Keyring
from im_task.serialization import (
    _CLOUDPICKLE_TYPES,
    CallTemplate,
    TaskWrapper,
    _ByValue,
    _cloudpickles_own_types,
    _ReferencePickler,
    all_atomic,
    dumps_parts,
    loads_call,
)
from im_task.state import STATE, State
from im_task.transports import RecordingTransport, TaskRequest
from im_task.transports.base import TaskNames, check_request, named, request_of

KEY = b"fast-paths-3f9c2b7e1d0a8c4f6b5e2d9a7c1f3e8b"


def module_level(a: int, b: str = "", *rest: object, c: float | None = None, **more: object) -> None:
    """A module-level function: plain pickle carries it by reference."""


@task
def recorded(a: int, b: str, c: float | None = None) -> None:
    """A module-level task."""


# -- the HMAC ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 63, 64, 65, 200])
def test_the_keyrings_hmac_is_hmac_sha256(size: int) -> None:
    key = bytes(range(256))[:size]
    keyring = Keyring([key])
    message = os.urandom(1000)
    expected = hmac.new(key, message, "sha256").digest()
    assert keyring.sign(message[:7], memoryview(message)[7:]) == expected
    assert keyring.verify(keyring.signing_id, expected, message)
    assert not keyring.verify(keyring.signing_id, expected, message + b"x")


# -- the binding and the sealer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "headers", "due_offset"),
    [
        ("default", {}, None),
        ("mail", {"X-Tenant": "a%sb%%c", "Content-Type": "text/plain"}, 3600.0),
        ("q-1", {"X-Name": "élan \u2603", "x-quote": 'say "hi"\\'}, -50.0),
    ],
)
def test_the_sealer_makes_the_envelope_seal_makes(
    queue: str, headers: dict[str, str], due_offset: float | None
) -> None:
    keyring = Keyring([KEY])
    now = 1_790_000_000.75
    due = None if due_offset is None else now + due_offset
    sealer = TaskSealer(keyring, path="/_ah/task/app/f%20g", queue=queue, headers=headers, lifetime=86_400.5)
    envelope = sealer.seal(b"payload \x00\xff", now=now, due=due)

    opened = unseal(envelope, keyring)
    binding = opened.binding
    assert envelope[0] == BOUND_VERSION
    assert opened.payload == b"payload \x00\xff"
    assert binding is not None
    schedule = None if due is None else dt_of(due)
    expected = Binding.for_task(
        path="/_ah/task/app/f%20g", queue=queue, headers=headers, lifetime=86_400.5, schedule_time=schedule, now=now
    )
    assert dataclasses.replace(expected, task_id=binding.task_id) == binding
    assert seal(b"payload \x00\xff", keyring, binding) == envelope  # byte for byte
    assert sealer.binding_of(envelope) == binding


@pytest.mark.parametrize("lifetime", [3600, 86_400.5, 0.25])
def test_the_sealers_kept_bindings_make_the_envelopes_seal_makes_second_after_second(lifetime: float) -> None:
    keyring = Keyring([KEY])
    sealer = TaskSealer(keyring, path="/_ah/task/app/f", queue="q", headers={"X-A": "%d"}, lifetime=lifetime)
    # Calls within a second, at its very end and start, across seconds, a clock set back, and time 0.
    times = [1_790_000_000.25, 1_790_000_000.5, 1_790_000_000.9995, 1_790_000_000.9999999, 1_790_000_001.0]
    times += [1_790_000_001.75, 1_790_000_003.5, 1_790_000_002.5, 0.0, 0.5, 1_790_000_000.75]
    for now in times:
        envelope = sealer.seal(b"p", now=now)
        binding = unseal(envelope, keyring).binding
        assert binding is not None
        expected = Binding.for_task(
            path="/_ah/task/app/f", queue="q", headers={"X-A": "%d"}, lifetime=lifetime, now=now
        )
        assert dataclasses.replace(expected, task_id=binding.task_id) == binding, now
        assert seal(b"p", keyring, binding) == envelope  # byte for byte


def test_the_sealer_takes_a_new_id_prefix_after_a_fork() -> None:
    keyring = Keyring([KEY])
    sealer = TaskSealer(keyring, path="/u", queue="q", headers={}, lifetime=60)
    before = unseal(sealer.seal(b"p", now=1e9), keyring).binding
    _ids.renew()  # what a forked child does
    after = unseal(sealer.seal(b"p", now=1e9), keyring).binding
    assert before is not None
    assert after is not None
    assert after.task_id[:16] == _ids.prefix != before.task_id[:16]
    assert after.task_id[16:] == "00000000"


def test_a_signer_that_read_the_start_signs_as_the_keyring_does() -> None:
    keyring = Keyring([KEY, b"other-key-0123456789abcdef-0123456789"])
    signer = keyring.signer(b"start", memoryview(b"-more"))
    assert signer.sign(b"middle", b"end") == keyring.sign(b"start-moremiddle", b"end")
    assert signer.sign(b"again") == hmac.new(KEY, b"start-moreagain", "sha256").digest()  # reusable


def dt_of(seconds: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def test_task_ids_are_24_hex_digits_and_unique() -> None:
    ids = {new_task_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_other_task_ids_than_its_parent() -> None:
    new_task_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, " ".join(new_task_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_task_id() for _ in range(3)]
    assert len(child) == 3
    assert {i[:16] for i in child}.isdisjoint({i[:16] for i in parent})  # another random prefix


# -- serialising ------------------------------------------------------------------------------------------


META = (False, None, "/_ah/task/tests/recorded")
ATOMIC_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1, "two"), {"c": 3.0}),
    ((), {}),
    (("same", "same", "same"), {"same": "same"}),
    ((b"x" * 200_000, "y" * 70_000, True, None, 2**80, 1.5j), {"k": b"z" * 100}),
    ((-1,), {"c": None}),
]


@pytest.mark.parametrize(("args", "kwargs"), ATOMIC_CALLS)
def test_a_call_template_reads_back_as_the_whole_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert all_atomic(args, kwargs)
    template = CallTemplate(recorded, META)
    payload = template.dumps(args, kwargs)
    assert pickle.loads(payload) == pickle.loads(dumps_parts(recorded, args, kwargs, META))
    call = loads_call(payload)
    assert (call.func, call.args, dict(call.kwargs), call.description) == (recorded, args, kwargs, META[2])


def test_a_call_template_refuses_a_callable_that_pickles_with_a_memo() -> None:
    shared = ("shared",)
    with pytest.raises(ValueError, match="memo"):
        CallTemplate((shared, shared), META)  # type: ignore[arg-type]


def test_all_atomic_is_false_for_containers_and_objects() -> None:
    assert not all_atomic(([1],), {})
    assert not all_atomic((), {"d": {}})
    assert not all_atomic((object(),), {})


def test_module_level_functions_travel_by_reference_and_nested_ones_by_value() -> None:
    def nested(x: int) -> int:
        return x + 1

    by_reference = dumps_parts(module_level, (module_level, Path("p")), {}, META)
    by_value = dumps_parts(nested, (), {}, META)
    assert b"cloudpickle" not in by_reference
    assert b"module_level" in by_reference
    assert b"cloudpickle" in by_value
    assert loads_call(by_reference).args == (module_level, Path("p"))
    assert loads_call(by_value).func(1) == 2


def test_what_main_defines_travels_by_value_and_runs_in_another_program(tmp_path: Path) -> None:
    # A script's __main__ defines a function and passes it as an argument; this process (another __main__)
    # must run it: plain pickle would have written a reference to __main__.shout, which is not here.
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from im_task.serialization import dumps_parts

            class Loud:
                def __init__(self, word):
                    self.word = word

            def shout(loud):
                return loud.word.upper()

            sys.stdout.write(dumps_parts(len, (shout, Loud("hey")), {}, (False, None, "main")).hex())
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    call = loads_call(bytes.fromhex(done.stdout))
    shout, loud = call.args
    assert shout(loud) == "HEY"


def test_an_argument_that_cannot_be_pickled_is_named() -> None:
    import threading

    with pytest.raises(EnqueueErrorClass, match="argument 1"):
        dumps_parts(module_level, (1, threading.Lock()), {}, META)


# -- checking the arguments ------------------------------------------------------------------------------


def f_positional_only(a: int, b: int, /, c: int = 0) -> None: ...
def f_keyword_only(*, k: int, m: int = 1) -> None: ...
def f_everything(a: int, /, b: int, c: int = 0, *rest: int, d: int, e: int = 0, **more: int) -> None: ...


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((1,), {}),
    ((1, 2), {}),
    ((1, 2, 3), {}),
    ((1, 2, 3, 4, 5), {}),
    ((1,), {"b": 2}),
    ((1, 2), {"d": 4}),
    ((1,), {"a": 1}),
    ((), {"k": 1}),
    ((), {"k": 1, "m": 2, "z": 3}),
    ((1, 2), {"c": 3, "d": 4, "x": 5}),
]


@pytest.mark.parametrize("func", [module_level, f_positional_only, f_keyword_only, f_everything, len])
def test_the_argument_checker_refuses_what_signature_bind_refuses(func: Callable[..., Any]) -> None:
    signature = inspect.signature(func)
    checker = _checker_of(signature)
    assert checker is not None
    for args, kwargs in CALLS:
        try:
            signature.bind(*args, **kwargs)
            expected = True
        except TypeError:
            expected = False
        try:
            checker(*args, **kwargs)
            got = True
        except TypeError:
            got = False
        assert got == expected, (func, args, kwargs)


def test_a_call_that_does_not_fit_still_says_why(im_task_recorder: RecordingTransport) -> None:
    with pytest.raises(EnqueueError, match="the arguments do not fit"):
        recorded(1, 2, 3, 4)  # type: ignore[call-arg]
    assert im_task_recorder.requests == []


# -- what every call shares, and when it changes -------------------------------------------------------------


def test_a_new_secret_or_default_queue_takes_effect_at_the_next_call(im_task_recorder: RecordingTransport) -> None:
    configure(secret="first-secret-0123456789abcdef-0123456789")
    recorded(1, "a")
    configure(secret="second-secret-9876543210fedcba-9876543210", default_queue="other")
    recorded(2, "b")
    first, second = im_task_recorder.requests
    assert first.queue == "default"
    assert second.queue == "other"
    assert unseal(second.body, get_keyring()).binding is not None  # signed with the secret now in force
    with pytest.raises(Exception, match="signature"):
        unseal(first.body, get_keyring())


def test_the_common_call_makes_the_task_the_general_path_makes(im_task_recorder: RecordingTransport) -> None:
    first = recorded(1, "a", c=2.5)  # the first call makes the plan, on the general path
    plan = recorded._plans[0]
    assert plan is not None
    assert plan.direct is not None
    second = recorded(1, "a", c=2.5)
    general, direct = im_task_recorder.requests
    assert dataclasses.replace(direct, body=general.body, name=general.name) == general
    assert direct.headers is not general.headers  # each task its own headers
    opened = [unseal(request.body, get_keyring()) for request in (general, direct)]
    assert opened[0].payload == opened[1].payload
    assert loads_call(opened[1].payload).func is recorded  # type: ignore[arg-type]
    bindings = [item.binding for item in opened]
    assert bindings[0] is not None
    assert bindings[1] is not None
    assert bindings[0].task_id != bindings[1].task_id
    assert [(b.path, b.queue, b.headers, b.due_time - b.made, b.expires - b.made) for b in bindings] == 2 * [
        (recorded.url, "default", {}, 0, 31 * 24 * 3600 + 1)
    ]
    assert dataclasses.replace(second, name=first.name) == first
    assert second.name == direct.name


def test_the_common_call_leaves_every_other_call_to_the_general_path(im_task_recorder: RecordingTransport) -> None:
    recorded(1, "a")
    recorded(1, ["a list"])  # type: ignore[arg-type]  # not of a plain type: the general pickler
    with pytest.raises(EnqueueError, match="the arguments do not fit"):
        recorded(1)  # type: ignore[call-arg]
    configure(default_queue="elsewhere")  # new settings: a new plan
    recorded(2, "b")
    queues = [request.queue for request in im_task_recorder.requests]
    assert queues == ["default", "default", "elsewhere"]
    assert loads_call(unseal(im_task_recorder.requests[1].body, get_keyring()).payload).args == (1, ["a list"])  # type: ignore[arg-type]


def test_a_name_claimed_under_the_lock_is_refused_the_second_time() -> None:
    names = TaskNames()
    with names.lock:
        names.claim_locked("q", "n")
        with pytest.raises(TaskAlreadyExistsError, match="'n' is already taken on queue 'q'"):
            names.claim_locked("q", "n")
    names.claim("other", "n")
    with pytest.raises(TaskAlreadyExistsError):
        names.claim("other", "n")
    names.clear()
    names.claim("q", "n")


def test_requests_are_the_same_as_the_dataclass_makes() -> None:
    fields = {
        "queue": "q",
        "url": "/u",
        "body": b"b",
        "headers": {"A": "1"},
        "name": None,
        "schedule_time": None,
        "target": None,
        "dispatch_deadline": None,
        "retry_options": None,
    }
    made = request_of(dict(fields))
    assert made == TaskRequest(**fields)  # type: ignore[arg-type]
    assert named(made, "n") == dataclasses.replace(made, name="n")
    assert made.name is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.name = "x"  # type: ignore[misc]


def test_a_checked_queue_name_is_remembered_but_a_bad_one_is_still_refused() -> None:
    transport = RecordingTransport()
    good = TaskRequest(queue="fine", url="/u", body=b"")
    check_request(good, transport)
    check_request(good, transport)
    for bad in ("bad queue", "", 7):
        with pytest.raises(EnqueueErrorClass, match="Bad queue name"):
            check_request(dataclasses.replace(good, queue=bad), transport)  # type: ignore[arg-type]


def test_the_recording_transport_names_tasks_uniquely() -> None:
    transport = RecordingTransport()
    names = {transport.enqueue(TaskRequest(queue="q", url="/u", body=b"")) for _ in range(1000)}
    assert len(names) == 1000
    assert all(len(name) >= 32 and int(name, 16) >= 0 for name in names)


# -- the endpoint's headers ------------------------------------------------------------------------------------


def test_task_headers_are_parsed_in_either_case_and_family() -> None:
    sent = make_task_headers(queue_name="projects/p/locations/l/queues/q", task_name="t", retry_count=2)
    for headers in (sent, {k.lower(): v for k, v in sent.items()}, Headers(sent)):
        parsed = TaskHeaders.parse(headers)
        assert parsed is not None
        assert (parsed.queue_name, parsed.task_name, parsed.retry_count) == ("q", "t", 2)
    cloud = make_task_headers(queue_name="q", task_name="t", family="X-CloudTasks-")
    parsed = TaskHeaders.parse({**cloud, "X-AppEngine-QueueName": "q"})  # an incomplete family is skipped
    assert parsed is not None
    assert parsed.family == "X-CloudTasks-"
    assert TaskHeaders.parse({"X-AppEngine-QueueName": "q", "X-AppEngine-TaskName": ""}) is None


def test_queue_headers_keep_the_names_as_given() -> None:
    given = {"X-AppEngine-QueueName": "q", "x-cloudtasks-taskname": "t", "Cookie": "c", "X-Other": "o"}
    expected = {"X-AppEngine-QueueName": "q", "x-cloudtasks-taskname": "t"}
    assert queue_headers(Headers(given)) == expected
    assert queue_headers(given) == expected
    assert Headers(given).get("COOKIE") == "c"
    assert Headers(given).get("nope", 5) == 5


# -- what cloudpickle reduces its own way goes to cloudpickle (review of issue 13) --------------------------------

PARAMS = typing.ParamSpec("PARAMS")  # at module level: found by name in another program too


def test_every_type_cloudpickle_reduces_its_own_way_is_left_to_it() -> None:
    # The written-out list must hold every type of the installed cloudpickle's dispatch table (less copyreg's).
    import cloudpickle

    assert _cloudpickles_own_types(cloudpickle) <= _CLOUDPICKLE_TYPES
    assert typing.TypeVar in _CLOUDPICKLE_TYPES
    assert types.MethodType in _CLOUDPICKLE_TYPES


@pytest.mark.parametrize(
    "value",
    [
        types.MethodType(module_level, 3),  # written by plain pickle as getattr(3, "module_level")
        typing.TypeVar("Unlisted"),
        dataclasses._FIELD,  # type: ignore[attr-defined]  # a marker that must stay the same object
    ],
    ids=["bound-method", "typevar", "dataclass-field-marker"],
)
def test_the_reference_pickler_hands_cloudpickles_own_types_to_it(value: object) -> None:
    with pytest.raises(_ByValue):
        _ReferencePickler(io.BytesIO(), pickle.HIGHEST_PROTOCOL).dump(value)
    payload = dumps_parts(len, (value,), {}, META)
    assert b"cloudpickle" in payload


def test_a_dataclass_marker_reads_back_as_the_same_object() -> None:
    marker = dataclasses._FIELD  # type: ignore[attr-defined]
    assert loads_call(dumps_parts(len, (marker,), {}, META)).args[0] is marker


def test_a_type_parameter_its_module_finds_by_name_travels_by_reference() -> None:
    payload = dumps_parts(len, (PARAMS,), {}, META)
    assert b"cloudpickle" not in payload
    assert loads_call(payload).args[0] is PARAMS


@pytest.mark.skipif(sys.version_info < (3, 11), reason="needs typing.TypeVarTuple (Python 3.11)")
def test_what_cloudpickle_copies_from_main_runs_in_another_program(tmp_path: Path) -> None:
    # A script's __main__ passes type parameters it defines and a bound method of a module-level function
    # that its object does not hold under that name; this process (another __main__) must read them back.
    helpers = "fast_paths_method_helpers"
    (tmp_path / f"{helpers}.py").write_text(
        "def doubled(self):\n    return self.n * 2\n\n\nclass Box:\n    def __init__(self, n):\n        self.n = n\n"
    )
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, types, typing
            from im_task.serialization import dumps_parts
            import {helpers} as helpers

            T = typing.TypeVar("T", bound=int)
            P = typing.ParamSpec("P", bound=str)
            Ts = typing.TypeVarTuple("Ts")
            method = types.MethodType(helpers.doubled, helpers.Box(3))
            for value in (T, P, Ts, method, (P, lambda: 7)):
                print(dumps_parts(len, (value,), {{}}, (False, None, "main")).hex())
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True, env=env)
    sys.path.insert(0, str(tmp_path))
    try:
        typevar, paramspec, typevartuple, method, (with_lambda, seven) = (
            loads_call(bytes.fromhex(line)).args[0] for line in done.stdout.split()
        )
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(helpers, None)
    assert (type(typevar), typevar.__name__, typevar.__bound__) == (typing.TypeVar, "T", int)
    assert (type(paramspec), paramspec.__name__, paramspec.__bound__) == (typing.ParamSpec, "P", str)
    assert (type(typevartuple).__name__, typevartuple.__name__) == ("TypeVarTuple", "Ts")
    assert method() == 6
    assert (with_lambda.__name__, seven()) == ("P", 7)


# -- a template is used only while its module's name holds the task function ---------------------------------


@task
def rebindable(x: object) -> tuple[str, object]:
    """A module-level task that a test rebinds, as a reload, a monkeypatch or ``mock.patch`` would."""
    return ("original", x)


def stand_in(x: object) -> tuple[str, object]:
    """What the rebound name holds."""
    return ("stand-in", x)


def test_a_call_after_its_module_name_is_rebound_still_runs_its_own_function(
    im_task_recorder: RecordingTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = rebindable
    original(1)  # the plan and its template are made
    replacement = task(stand_in)
    replacement.__qualname__ = "rebindable"  # type: ignore[attr-defined]
    monkeypatch.setattr(sys.modules[__name__], "rebindable", replacement)
    original(2)  # plain arguments: the template's path, before the fix a reference to the rebound name
    original([3])
    keyring = get_keyring()
    ran: list[object] = []
    for request in im_task_recorder.requests[1:]:
        payload = unseal(request.body, keyring).payload
        assert isinstance(payload, bytes)
        call = loads_call(payload)
        assert isinstance(call.func, TaskWrapper)
        ran.append(call.func.func(*call.args, **call.kwargs))
    assert ran == [("original", 2), ("original", [3])]


# -- the argument checker: names a def cannot spell, and where it follows the real call ------------------------


class Signed:
    """A callable whose ``__signature__`` is made by hand (as makefun or pydantic do)."""

    def __init__(self, names: list[str]) -> None:
        self.__signature__ = inspect.Signature(
            [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
        )

    def __call__(self, *args: object, **kwargs: object) -> None:
        """Does nothing."""


@pytest.mark.parametrize("names", [["ﬁle", "file"], ["__debug__"], ["ﬁle"], ["x", "ǅ"]])
def test_names_a_def_would_spell_otherwise_are_left_to_signature_bind(names: list[str]) -> None:
    assert _checker_of(inspect.signature(Signed(names))) is None


def test_a_signature_no_def_can_have_is_left_to_signature_bind() -> None:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    unordered = inspect.Signature(
        [inspect.Parameter("a", kind, default=1), inspect.Parameter("b", kind)], __validate_parameters__=False
    )
    assert _checker_of(unordered) is None  # the def would be a SyntaxError: b has no default and follows a


def test_hand_made_signatures_are_checked_as_signature_bind_does(im_task_recorder: RecordingTransport) -> None:
    task(Signed(["ﬁle", "file"]))(1, 2)
    task(Signed(["__debug__"]))(1)
    with pytest.raises(EnqueueError, match="missing a required argument"):
        task(Signed(["ﬁle"]))(file=1)  # the signature's name is ﬁle, not file
    assert len(im_task_recorder.requests) == 2


@task
def hand_signed(*args: Any, **kwargs: Any) -> None:
    """A module-level task whose hand-made signature no checker can express (its name changes under NFKC)."""


hand_signed.func.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("\ufb01le", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
)


def test_the_common_call_checks_a_signature_no_checker_can_express(im_task_recorder: RecordingTransport) -> None:
    # Found by review: the common call skipped Signature.bind when no checker could be written for the signature.
    for _ in range(2):
        with pytest.raises(EnqueueError, match="missing a required argument"):
            hand_signed(file=1)
        hand_signed(1)  # the first good call makes the plan; the misfits around it are refused all the same
    assert len(im_task_recorder.requests) == 2


def positional_default_and_kwargs(a: int = 1, /, **kw: int) -> tuple[int, dict[str, int]]:
    """``a=5`` goes to ``kw``: the real call takes it."""
    return a, kw


def test_the_checker_follows_the_real_call_where_signature_bind_differs(
    im_task_recorder: RecordingTransport,
) -> None:
    # Finding 7 of the review: Signature.bind refuses f(a=5) before Python 3.13; the call itself takes it.
    assert positional_default_and_kwargs(a=5) == (1, {"a": 5})
    checker = _checker_of(inspect.signature(positional_default_and_kwargs))
    assert checker is not None
    checker(a=5)
    task(positional_default_and_kwargs)(a=5)
    assert [response.status for response in im_task_recorder.run_all()] == [200]


# -- headers too large for the binding are refused with the options ---------------------------------------


def headed(x: int) -> None:
    """A function given headers."""


@pytest.fixture
def roomy_recorder(im_task_settings: object) -> Iterator[RecordingTransport]:
    """A recording transport taking tasks of 300 kB: large headers travel twice (request and binding)."""
    recorder = RecordingTransport(max_task_size=300_000)
    configure(transport=recorder)
    try:
        yield recorder
    finally:
        recorder.close()


def test_headers_too_large_for_the_binding_are_refused_when_the_options_are_made(
    roomy_recorder: RecordingTransport,
) -> None:
    url = "/_ah/task/headed"
    room = MAX_BINDING_SIZE - largest_binding_size(url, {"X-Big": ""})
    fits = task(headed, url=url, headers={"X-Big": "a" * room})
    assert largest_binding_size(url, fits.options.headers or {}) == MAX_BINDING_SIZE
    fits.map([1, 2])  # before the fix: a bare ValueError from the sealer, out of map()'s per-call errors
    bindings = [unseal(request.body, get_keyring()).binding for request in roomy_recorder.requests]
    assert [binding.headers for binding in bindings if binding is not None] == [{"X-Big": "a" * room}] * 2
    with pytest.raises(ConfigurationError, match="at most 65,535"):
        task(headed, url=url, headers={"X-Big": "a" * (room + 1)})
    with pytest.raises(ConfigurationError, match="at most 65,535"):
        fits.using(headers={"X-Big": "é" * room})  # six bytes each in the JSON


# -- names and ids never repeat -------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_names_recorded_tasks_otherwise_than_its_parent() -> None:
    transport = RecordingTransport()
    request = TaskRequest(queue="q", url="/u", body=b"")
    transport.enqueue(request)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, transport.enqueue(request).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = transport.enqueue(request)
    assert len(child) == 32
    assert child[:24] != parent[:24]  # another random prefix


def test_task_ids_do_not_repeat_after_two_to_the_32_tasks() -> None:
    keyring = Keyring([KEY])
    sealer = TaskSealer(keyring, path="/u", queue="q", headers={}, lifetime=60)
    _ids.counter = itertools.count(2**32 - 2)
    try:
        made = [new_task_id(), new_task_id()]
        made += [unseal(sealer.seal(b"p", now=1e9), keyring).binding.task_id for _ in range(2)]  # type: ignore[union-attr]
    finally:
        _ids.renew()
    prefix = made[0][:16]
    assert made == [f"{prefix}{n:08x}" for n in range(2**32 - 2, 2**32 + 2)]


# -- a restored state never pairs settings with another keyring ---------------------------------------------


def test_restoring_the_state_never_shows_the_restored_settings_with_the_previous_keyring() -> None:
    configure(secret="first-secret-0123456789abcdef-0123456789")
    first = (get_settings(), get_keyring())
    snapshot = STATE.snapshot()
    configure(secret="second-secret-9876543210fedcba-9876543210")
    second = (get_settings(), get_keyring())
    seen: list[tuple[object, object]] = []

    def in_restore(frame: types.FrameType, event: str, arg: object) -> Any:
        seen.append((STATE.settings, STATE.keyring))  # what a reader without the lock would take, line by line
        return in_restore

    def tracer(frame: types.FrameType, event: str, arg: object) -> Any:
        return in_restore if frame.f_code is State.restore.__code__ else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        STATE.restore(snapshot)
    finally:
        sys.settrace(previous)
    assert (STATE.settings, STATE.keyring) == first
    assert len(seen) > 3
    assert all(keyring is None or (settings, keyring) in (first, second) for settings, keyring in seen)


def test_the_local_queues_generated_names_do_not_repeat_after_2_to_the_32(tmp_path: Path) -> None:
    import sqlite3

    from im_task.transports import LocalTransport, TaskRequest

    path = tmp_path / "q.sqlite3"
    request = TaskRequest(queue="default", url="/_ah/task/m/f", body=b"")
    with LocalTransport(path, autostart=False) as queue:
        first = queue.enqueue(request)
        with sqlite3.connect(path) as conn:  # the file's ids (a generated name is its prefix and the id) near 2**32
            conn.execute("UPDATE queue_file SET value = 4294967294 WHERE key = 'id_floor'")
        conn.close()
        last, after = queue.enqueue(request), queue.enqueue(request)
    assert last == f"{first[:16]}00000000ffffffff"
    assert len(after) == len(last) == 32
    assert after == f"{first[:16]}0000000100000000"  # counted on, not wrapped
