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
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from im_task import EnqueueError, configure, task
from im_task.config import get_keyring
from im_task.decorator import _checker_of
from im_task.envelope import BOUND_VERSION, Binding, TaskSealer, new_task_id, seal, unseal
from im_task.errors import EnqueueError as EnqueueErrorClass
from im_task.headers import Headers, TaskHeaders, make_task_headers, queue_headers
from im_task.keys import Keyring
from im_task.serialization import CallTemplate, all_atomic, dumps_parts, loads_call
from im_task.transports import RecordingTransport, TaskRequest
from im_task.transports.base import check_request, named, request_of

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
