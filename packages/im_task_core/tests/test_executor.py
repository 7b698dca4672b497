"""The task endpoint: every row of the request contract, and forged requests never reaching the unpickler."""

from __future__ import annotations

import io
import logging
import pickle
import secrets
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from im_task_testsupport import sink
from im_task_testsupport.proof import proven

import im_task.config
import im_task.envelope
import im_task.executor
import im_task.serialization
from im_task import (
    PermanentTaskFailure,
    RetryTaskException,
    SingularTaskFailure,
    configure,
    get_queue_name,
    get_retry_count,
    get_task_name,
    task,
)
from im_task.config import get_keyring
from im_task.envelope import Binding, seal
from im_task.executor import TaskResponse, handle_request
from im_task.headers import APPENGINE, CLOUDTASKS, make_task_headers
from im_task.keys import KEY_ID_SIZE, Keyring
from im_task.serialization import TaskCall, dumps_call
from im_task.state import STATE
from im_task.transports import RecordingTransport

PATH = "/_ah/task/app/work"
ENVELOPE_HEADER = 1 + KEY_ID_SIZE + 32  # version, key id, HMAC-SHA256


def work(label: str) -> None:
    sink.record(label)


def fail_with(exc: BaseException) -> None:
    sink.record("ran")
    raise exc


def sealed(
    func: Callable[..., Any],
    *args: Any,
    retry_limit: int | None = None,
    path: str = PATH,
    queue: str = "default",
    **kwargs: Any,
) -> bytes:
    """A genuine task's envelope, bound to ``path`` and ``queue`` as the decorator binds them."""
    call = TaskCall(func, args, kwargs, retry_limit=retry_limit, description="tests/" + func.__name__)
    binding = Binding.for_task(path=path, queue=queue, headers={}, lifetime=3600)
    return seal(dumps_call(call), get_keyring(), binding)


def queue_headers(family: str = APPENGINE, **overrides: Any) -> dict[str, str]:
    values: dict[str, Any] = {"queue_name": "default", "task_name": "task-1", "family": family, **overrides}
    return make_task_headers(**values)


def post(
    body: bytes | io.BytesIO, headers: dict[str, str] | None = None, method: str = "POST", *, proof: bool = True
) -> TaskResponse:
    """POSTs to the endpoint as the local queue would: with the signed proof that makes its counts trusted."""
    sent = queue_headers() if headers is None else dict(headers)
    if proof:
        sent = proven(sent, body.getvalue() if isinstance(body, io.BytesIO) else body)
    return handle_request(method, PATH, body, sent, "10.0.0.1")


class _Spy:
    """Observes pickle.loads as the serialization module calls it, and lets it do its work."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = pickle.loads

    def __call__(self, data: bytes, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(data, *args, **kwargs)


@pytest.fixture
def loads_spy(monkeypatch: pytest.MonkeyPatch) -> _Spy:
    spy = _Spy()
    monkeypatch.setattr(vars(im_task.serialization)["pickle"], "loads", spy)
    return spy


class _SideEffect:
    """Unpickling this records ``UNPICKLED`` in the sink: proof that the unpickler ran."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (sink.record, ("UNPICKLED",))


# --- 200: the task ran -------------------------------------------------------------------------------------


def test_success_is_200() -> None:
    response = post(sealed(work, "done"))
    assert (response.status, response.body, response.exception) == (200, b"OK\n", None)
    assert response.status_line == "200 OK"
    assert ("Content-Type", "text/plain; charset=utf-8") in response.headers
    assert sink.calls == ["done"]


def test_lower_case_method_is_accepted() -> None:
    assert post(sealed(work, "x"), method="post").status == 200


# --- failures raised by the task -----------------------------------------------------------------------------


def test_permanent_task_failure_is_200_logged_with_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="im_task")
    response = post(sealed(fail_with, PermanentTaskFailure("bad input")))
    assert response.status == 200
    assert isinstance(response.exception, PermanentTaskFailure)
    assert sink.calls == ["ran"]
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR
    assert "failed permanently" in record.getMessage()
    assert "task-1" in record.getMessage()
    assert "tests/fail_with" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[1] is response.exception


def test_singular_task_failure_is_408_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="im_task")
    response = post(sealed(fail_with, SingularTaskFailure("try later")))
    assert response.status == 408
    assert response.status_line == "408 Request Timeout"
    assert isinstance(response.exception, SingularTaskFailure)
    assert [r for r in caplog.records if r.levelno > logging.DEBUG and r.name != "im_task.outcomes"] == []
    assert any("try later" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize(
    "exc",
    [RetryTaskException("again please"), ValueError("secret detail 1234"), KeyError("k"), ZeroDivisionError()],
    ids=lambda e: type(e).__name__,
)
def test_other_exceptions_are_500_without_traceback_in_the_body(
    caplog: pytest.LogCaptureFixture, exc: Exception
) -> None:
    response = post(sealed(fail_with, exc))
    assert response.status == 500
    assert response.status_line == "500 Internal Server Error"
    assert response.body == b"The task failed; the queue will retry it.\n"
    assert b"Traceback" not in response.body
    assert type(exc).__name__.encode() not in response.body
    assert type(response.exception) is type(exc)
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert "the queue will retry it unless its own retry limit is used up" in record.getMessage()


# --- retry limit ---------------------------------------------------------------------------------------------


def test_retry_limit_runs_up_to_n_retries_then_gives_up_with_200(caplog: pytest.LogCaptureFixture) -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    task(work, retry_options={"task_retry_limit": 2})("attempt")
    [request] = recorder.requests
    statuses = [recorder.deliver(request, retry_count=n).status for n in range(4)]
    assert statuses == [200, 200, 200, 200]
    assert sink.calls == ["attempt"] * 3  # retries 0, 1 and 2 ran; retry 3 is past the limit
    [record] = [r for r in caplog.records if "Gave up" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "after 3 retries (task_retry_limit=2)" in record.getMessage()


def test_retry_limit_zero_allows_only_the_first_attempt() -> None:
    body = sealed(work, "first", retry_limit=0)
    assert post(body, queue_headers(retry_count=0)).status == 200
    response = post(body, queue_headers(retry_count=1))
    assert (response.status, response.body) == (200, b"Gave up: retry limit reached.\n")
    assert sink.calls == ["first"]


def test_without_retry_limit_any_retry_count_runs() -> None:
    assert post(sealed(work, "late"), queue_headers(retry_count=500)).status == 200
    assert sink.calls == ["late"]


# --- 403: not from a queue, or not signed by us ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-AppEngine-QueueName": "default"},
        {"X-AppEngine-TaskName": "t"},
        {"X-AppEngine-QueueName": "", "X-AppEngine-TaskName": "t"},
        {"X-AppEngine-QueueName": "default", "X-CloudTasks-TaskName": "t"},
        {"X-AppEngine-TaskRetryCount": "0", "Content-Type": "application/octet-stream"},
    ],
    ids=["none", "queue-only", "name-only", "empty-queue", "mixed-families", "others"],
)
def test_missing_task_headers_are_403_and_nothing_runs(
    caplog: pytest.LogCaptureFixture, loads_spy: _Spy, headers: dict[str, str]
) -> None:
    response = post(sealed(work, "should not run"), headers)
    assert (response.status, response.body) == (403, b"Forbidden: not a task queue request.\n")
    assert response.status_line == "403 Forbidden"
    assert sink.calls == []
    assert loads_spy.calls == 0
    assert any("no task queue headers" in r.getMessage() and "10.0.0.1" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("family", [APPENGINE, CLOUDTASKS])
@pytest.mark.parametrize("case", [str, str.lower, str.upper])
def test_both_header_families_in_any_case(family: str, case: Callable[[str], str]) -> None:
    @task
    def report() -> None:
        sink.record((get_queue_name(), get_task_name(), get_retry_count()))

    headers = {
        case(k): v
        for k, v in queue_headers(
            family,
            queue_name="projects/p/locations/us-central1/queues/mail",
            task_name="projects/p/locations/us-central1/queues/mail/tasks/abc-123",
            retry_count=2,
        ).items()
    }
    body = sealed(report.func, queue="mail")
    assert post(body, headers).status == 200
    assert sink.calls == [("mail", "abc-123", 2)]


def _forgeries() -> dict[str, Callable[[bytes], tuple[bytes, dict[str, str]]]]:
    def flip(index: int) -> Callable[[bytes], tuple[bytes, dict[str, str]]]:
        def forge(body: bytes) -> tuple[bytes, dict[str, str]]:
            forged = bytearray(body)
            forged[index] ^= 0x01
            return bytes(forged), queue_headers()

        return forge

    other = Keyring([b"another-secret-of-enough-bytes"])
    return {
        "flipped version byte": flip(0),
        "flipped key id byte": flip(3),
        "flipped mac byte": flip(20),
        "flipped payload byte": flip(-1),
        "other secret": lambda body: (seal(body[ENVELOPE_HEADER:], other), queue_headers()),
        "random bytes": lambda body: (secrets.token_bytes(len(body)), queue_headers()),
        "bare pickle": lambda body: (body[ENVELOPE_HEADER:], queue_headers()),
        "empty body": lambda body: (b"", queue_headers()),
        "valid body, no task headers": lambda body: (body, {"Content-Type": "application/octet-stream"}),
    }


@pytest.mark.parametrize("forgery", list(_forgeries()))
def test_forged_requests_never_reach_the_unpickler(
    caplog: pytest.LogCaptureFixture, loads_spy: _Spy, forgery: str
) -> None:
    payload = pickle.dumps(_SideEffect())
    genuine = seal(payload, get_keyring())
    body, headers = _forgeries()[forgery](genuine)
    response = post(body, headers)
    assert response.status == 403
    assert response.body.startswith(b"Forbidden")
    assert loads_spy.calls == 0
    assert sink.calls == []
    assert caplog.records, "a refused request is logged"


def test_the_side_effect_payload_does_show_when_genuine(loads_spy: _Spy) -> None:
    """The control for the forgery test: a genuine body with that payload does get unpickled."""
    response = post(seal(pickle.dumps(_SideEffect()), get_keyring()))
    assert response.status == 200  # unpickled, then found not to be a call: dropped
    assert loads_spy.calls == 1
    assert sink.calls == ["UNPICKLED"]


def test_signature_failure_is_logged_as_a_warning_naming_the_task(caplog: pytest.LogCaptureFixture) -> None:
    body = bytearray(sealed(work, "x"))
    body[-1] ^= 0xFF
    response = post(bytes(body))
    assert response.body == b"Forbidden: the task signature does not verify.\n"
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "task-1" in record.getMessage()
    assert "does not verify" in record.getMessage()


# --- 200: verified but undecodable -------------------------------------------------------------------------------


@pytest.fixture
def vanishing_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType(f"im_task_test_vanishing_{uuid.uuid4().hex}")

    def doomed(label: str) -> None:
        sink.record(label)

    doomed.__module__ = module.__name__
    doomed.__qualname__ = "doomed"
    module.doomed = doomed  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_verified_but_undecodable_is_200_and_logged_naming_the_task(
    caplog: pytest.LogCaptureFixture, vanishing_module: types.ModuleType
) -> None:
    body = sealed(vanishing_module.doomed, "never", path="/_ah/task/mod/doomed")
    assert vanishing_module.__name__.encode() in body  # pickled by reference, as code in a module is
    del vanishing_module.doomed  # the code changed since the task was enqueued
    response = handle_request("POST", "/_ah/task/mod/doomed", body, queue_headers(task_name="t-42"))
    assert (response.status, response.body) == (200, b"Dropped: the task cannot be decoded.\n")
    assert isinstance(response.exception, AttributeError)
    assert sink.calls == []
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR
    assert "t-42" in record.getMessage()
    assert "/_ah/task/mod/doomed" in record.getMessage()
    assert "will not be retried" in record.getMessage()
    assert record.exc_info is not None


def test_a_task_function_that_is_no_longer_one_is_dropped(vanishing_module: types.ModuleType) -> None:
    recorder = RecordingTransport()
    configure(transport=recorder)
    vanishing_module.doomed = task(vanishing_module.doomed)  # type: ignore[attr-defined]
    vanishing_module.doomed("never")
    vanishing_module.doomed = vanishing_module.doomed.func  # type: ignore[attr-defined]
    [response] = recorder.run_all()
    assert response.status == 200
    assert isinstance(response.exception, TypeError)
    assert "no longer a task function" in str(response.exception)
    assert sink.calls == []


def test_unknown_payload_format_is_dropped() -> None:
    payload = cloudpickle.dumps((99, work, ("x",), {}, (False, None, "")))
    response = post(seal(payload, get_keyring()))
    assert response.status == 200
    assert isinstance(response.exception, ValueError)
    assert sink.calls == []


# --- 413: too large ---------------------------------------------------------------------------------------------


class _Stream(io.BytesIO):
    """A request body stream that remembers how much was read from it."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.read_calls = getattr(self, "read_calls", 0) + 1
        return data


def test_bytes_body_over_the_cap_is_413(loads_spy: _Spy) -> None:
    configure(max_body_size=1024)
    response = post(b"x" * 1025)
    assert (response.status, response.status_line) == (413, "413 Content Too Large")
    assert loads_spy.calls == 0
    assert post(b"x" * 1024).status == 403  # at the cap: read, then refused for its signature


def test_stream_with_content_length_over_the_cap_is_413_and_not_read() -> None:
    configure(max_body_size=2048)
    stream = _Stream(sealed(work, "x" * 3000))
    headers = {**queue_headers(), "Content-Length": str(len(stream.getvalue()))}
    assert post(stream, headers).status == 413
    assert stream.tell() == 0
    assert getattr(stream, "read_calls", 0) == 0
    assert sink.calls == []


def test_stream_without_content_length_over_the_cap_is_413_reading_at_most_cap_plus_one() -> None:
    configure(max_body_size=2048)
    stream = _Stream(b"y" * 10_000)
    assert post(stream).status == 413
    assert stream.tell() == 2049


@pytest.mark.parametrize("declared", ["-1", "-100000", "nonsense", ""])
def test_stream_with_a_bad_content_length_reads_at_most_cap_plus_one(declared: str) -> None:
    configure(max_body_size=2048)
    stream = _Stream(b"y" * 10_000)
    assert post(stream, {**queue_headers(), "Content-Length": declared}).status == 413
    assert stream.tell() == 2049


def test_stream_within_the_cap_is_read_up_to_content_length_and_runs() -> None:
    body = sealed(work, "streamed")
    stream = _Stream(body + b"trailing bytes past the declared length")
    response = post(stream, {**queue_headers(), "Content-Length": str(len(body))})
    assert response.status == 200
    assert stream.tell() == len(body)
    assert sink.calls == ["streamed"]


def test_stream_without_content_length_within_the_cap_runs() -> None:
    assert post(_Stream(sealed(work, "unsized"))).status == 200
    assert sink.calls == ["unsized"]


# --- 405 -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_methods_other_than_post_are_405_with_allow(loads_spy: _Spy, method: str) -> None:
    response = post(sealed(work, "x"), method=method)
    assert response.status == 405
    assert response.status_line == "405 Method Not Allowed"
    assert ("Allow", "POST") in response.headers
    assert loads_spy.calls == 0
    assert sink.calls == []


# --- warm-up module ------------------------------------------------------------------------------------------------


@pytest.fixture
def warmup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Writes a module with the given source and configures it as the warm-up module; yields its name."""
    monkeypatch.setattr(STATE, "warmed_up", set())
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def make(source: str) -> str:
        name = f"im_task_test_warmup_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)
        configure(warmup_module=name)
        return name

    yield make
    for name in names:
        sys.modules.pop(name, None)


def test_warmup_module_is_imported_once_before_the_first_task(
    warmup: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="im_task")
    name = warmup("from im_task_testsupport import sink\nsink.record('warmed up')\n")
    assert name not in sys.modules
    assert post(sealed(work, "first")).status == 200
    assert post(sealed(work, "second")).status == 200
    assert sink.calls == ["warmed up", "first", "second"]
    assert sum("warm-up module" in r.getMessage() for r in caplog.records) == 1


def test_failing_warmup_is_500_and_the_task_does_not_run(
    warmup: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    name = warmup("from im_task_testsupport import sink\nsink.record('tried')\nraise RuntimeError('broken deploy')\n")
    for _ in range(2):  # not remembered as warmed up: the next request tries again
        response = post(sealed(work, "never"))
        assert (response.status, response.body) == (500, b"The warm-up module failed to import.\n")
        assert isinstance(response.exception, RuntimeError)
    assert sink.calls == ["tried", "tried"]
    assert name in caplog.text
    assert all(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)


def test_missing_warmup_module_is_500(warmup: Callable[[str], str]) -> None:
    configure(warmup_module="im_task_test_no_such_module")
    response = post(sealed(work, "never"))
    assert response.status == 500
    assert isinstance(response.exception, ImportError)
    assert sink.calls == []


def test_warmup_is_not_imported_for_refused_requests(warmup: Callable[[str], str]) -> None:
    name = warmup("from im_task_testsupport import sink\nsink.record('warmed up')\n")
    assert post(sealed(work, "x"), {}).status == 403
    assert post(b"forged" * 20).status == 403
    assert name not in sys.modules
    assert sink.calls == []


def test_broken_settings_at_request_time_are_a_logged_500_and_nothing_is_unpickled(
    loads_spy: _Spy, caplog: pytest.LogCaptureFixture
) -> None:
    body = sealed(work, "never")
    im_task.config.configure(environment="production", secret=None)  # what start-up checks would have refused
    with caplog.at_level(logging.ERROR, logger="im_task"):
        response = post(body)
    assert response.status == 500  # the queue retries until the configuration is fixed
    assert b"misconfigured" in response.body
    assert "No secret is configured" in caplog.text
    assert loads_spy.calls == 0
    assert sink.calls == []


def test_a_task_of_another_programs_main_is_dropped_with_a_hint(caplog: pytest.LogCaptureFixture) -> None:
    payload = cloudpickle.dumps((1, _MainRef(), (), {}, (False, None, "/_ah/task/__main__/gone")))
    body = im_task.envelope.seal(payload, get_keyring())
    with caplog.at_level(logging.ERROR, logger="im_task"):
        response = post(body)
    assert response.status == 200
    assert "define them in an importable module" in caplog.text


class _MainRef:
    """Unpickles as a lookup of a name that this program's __main__ does not have."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (getattr, (sys.modules["__main__"], "a_task_only_another_program_has"))


def test_debug_logging_shows_the_queue_headers_but_not_credentials(caplog: pytest.LogCaptureFixture) -> None:
    headers = {**queue_headers(), "Authorization": "Bearer secret-token-123", "Cookie": "session=abc"}
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        assert post(sealed(work, "x"), headers).status == 200
    assert "X-AppEngine-QueueName" in caplog.text
    assert "secret-token-123" not in caplog.text
    assert "session=abc" not in caplog.text


def test_refusals_log_at_warning_a_body_over_the_limit_too(caplog: pytest.LogCaptureFixture) -> None:
    """docs/endpoint.md: refused requests at WARNING, a body over the limit too (its caller is not authenticated)."""
    configure(max_body_size=1024)
    with caplog.at_level(logging.DEBUG, logger="im_task"):
        assert post(sealed(work, "x"), {}).status == 403
        assert post(b"x" * 1025).status == 413
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert [level for level, _ in levels] == [logging.WARNING, logging.WARNING], levels
    assert "no task queue headers" in levels[0][1]
    assert "max_body_size" in levels[1][1]


# --- the outcome header: what became of the task, for the queue ----------------------------------------------


@pytest.mark.parametrize(
    ("make_body", "status", "outcome"),
    [
        (lambda: sealed(work, "x"), 200, "ran"),
        (lambda: sealed(fail_with, PermanentTaskFailure("no")), 200, "failed"),
        (lambda: sealed(fail_with, SingularTaskFailure("again")), 408, "retry"),
        (lambda: sealed(fail_with, RuntimeError("boom")), 500, "retry"),
        (lambda: sealed(work, "x", retry_limit=0), 200, "gave-up"),
        (lambda: seal(b"not a pickle", get_keyring()), 200, "dropped"),
        (lambda: b"\x01" + b"\x00" * 60, 403, "refused"),
    ],
)
def test_every_response_says_its_outcome(make_body: Callable[[], bytes], status: int, outcome: str) -> None:
    response = post(make_body(), queue_headers(retry_count=1))
    assert (response.status, response.outcome) == (status, outcome)
    assert ("X-Im-Task-Outcome", outcome) in response.headers


def test_an_unknown_outcome_is_refused() -> None:
    from im_task.response import answer

    with pytest.raises(ValueError, match="outcome must be one of"):
        answer(200, "OK", outcome="fine")
