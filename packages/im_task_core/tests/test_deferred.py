"""``im_task.deferred``: the behaviours App Engine's own deferred tests check, on im-task.

Each kind of callable through ``serialize``/``run``, each ``defer`` option
reaching the request, the handler's statuses, ``invoke_member``, an oversize
payload still running, and the legacy (unsigned) payloads of the original.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import pickle
import sys
import types
from http import HTTPStatus
from typing import Any

import pytest
from im_task_testsupport import sink

import im_task.config
from im_task import (
    BadTransactionStateError,
    ConfigurationError,
    EnqueueError,
    TaskAlreadyExistsError,
    configure,
    deferred,
    errors,
)
from im_task.config import get_keyring
from im_task.endpoints import DEFERRED_URL, find_endpoint, handle_request
from im_task.envelope import BOUND_REFERENCE_VERSION, open_envelope, seal
from im_task.headers import CLOUDTASKS, make_task_headers
from im_task.retry import RetryOptions
from im_task.runtime import check_configuration
from im_task.serialization import TaskCall, dumps_call, loads_call
from im_task.testing import serve_wsgi
from im_task.transports import RecordingTransport, TaskRequest

# -- callables of every kind ------------------------------------------------------------------


def add(a: int, b: int) -> int:
    return a + b


def record(*items: Any, **kwargs: Any) -> None:
    sink.record(*items, *sorted(kwargs.items()))


def fail_with(kind: str) -> None:
    sink.record("attempt", kind)
    if kind == "permanent":
        raise deferred.PermanentTaskFailure("stop")
    if kind == "singular":
        raise deferred.SingularTaskFailure("once")
    raise RuntimeError("boom")


class Point:
    def __init__(self, x: int, y: int = 0) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def moved(self, dx: int) -> Point:
        return Point(self.x + dx, self.y)

    def __call__(self, factor: int) -> int:
        return self.x * factor

    @classmethod
    def origin(cls, y: int) -> Point:
        return cls(0, y)

    @staticmethod
    def norm(x: int, y: int) -> int:
        return abs(x) + abs(y)


def make_closure(offset: int) -> Any:
    def shifted(value: int) -> int:
        return value + offset

    return shifted


CALLABLES = [
    pytest.param(add, (1, 2), 3, id="function"),
    pytest.param(Point, (1, 2), Point(1, 2), id="class"),
    pytest.param(Point(3), (2,), 6, id="callable-object"),
    pytest.param(Point(1, 5).moved, (2,), Point(3, 5), id="bound-method"),
    pytest.param(Point.origin, (4,), Point(0, 4), id="class-method"),
    pytest.param(Point.norm, (-2, 3), 5, id="static-method"),
    pytest.param(len, ("abcd",), 4, id="builtin"),
    pytest.param("abc".upper, (), "ABC", id="bound-builtin-method"),
    pytest.param(make_closure(10), (5,), 15, id="closure"),
    pytest.param(lambda x: x * 2, (21,), 42, id="lambda"),
]


@pytest.mark.parametrize(("obj", "args", "expected"), CALLABLES)
def test_each_kind_of_callable_survives_serialize_and_run(obj: Any, args: tuple[Any, ...], expected: Any) -> None:
    assert deferred.run(deferred.serialize(obj, *args)) == expected


def test_a_nested_function_runs_too() -> None:
    def nested(a: int, *, b: int) -> int:
        return a * b

    assert deferred.run(deferred.serialize(nested, 6, b=7)) == 42


@pytest.mark.parametrize(
    ("obj", "member"),
    [(Point(1, 5).moved, "moved"), (Point.origin, "origin"), ("abc".upper, "upper")],
    ids=["bound-method", "class-method", "bound-builtin-method"],
)
def test_bound_methods_travel_as_invoke_member(obj: Any, member: str) -> None:
    call = loads_call(open_envelope(deferred.serialize(obj, 1), get_keyring()))
    assert call.func is deferred.invoke_member
    assert call.args[1:] == (member, 1)
    assert call.args[0] == obj.__self__


def test_invoke_member_looks_the_member_up_and_calls_it() -> None:
    assert deferred.invoke_member(Point(2, 3), "moved", 5) == Point(7, 3)
    assert deferred.invoke_member([3, 1, 2], "index", 1) == 1
    with pytest.raises(AttributeError):
        deferred.invoke_member(Point(1), "missing")
    with pytest.raises(ConfigurationError, match="member's name as a str"):
        deferred.invoke_member(Point(1), 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("obj", [42, "not callable", None])
def test_a_non_callable_is_a_value_error_at_once(obj: Any, im_task_recorder: RecordingTransport) -> None:
    with pytest.raises(ValueError, match="obj must be callable"):
        deferred.defer(obj, 1)
    with pytest.raises(ValueError, match="obj must be callable"):
        deferred.serialize(obj)
    assert im_task_recorder.requests == []


def test_run_refuses_what_does_not_verify_as_a_permanent_failure() -> None:
    data = deferred.serialize(add, 1, 2)
    with pytest.raises(deferred.PermanentTaskFailure) as caught:
        deferred.run(data[:-1] + bytes([data[-1] ^ 1]))
    assert isinstance(caught.value.__cause__, errors.SignatureError)
    legacy = pickle.dumps((sink.record, (sink.Tripwire(),), {}))
    with pytest.raises(deferred.PermanentTaskFailure):
        deferred.run(legacy)
    assert sink.events() == []  # nothing was unpickled
    with pytest.raises(ConfigurationError, match="bytes serialize"):
        deferred.run("text")  # type: ignore[arg-type]


def gone_payload(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A signed call of a function whose module no longer exists (the code changed since it was enqueued)."""
    module = types.ModuleType("im_task_gone_module")

    def function() -> None:
        raise AssertionError("never runs")

    function.__module__, function.__qualname__ = module.__name__, "function"
    module.function = function  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    payload = pickle.dumps((1, function, (), {}, (False, None, "")))
    monkeypatch.delitem(sys.modules, module.__name__)
    return seal(payload, get_keyring())


def test_run_raises_a_permanent_failure_for_a_payload_that_no_longer_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(deferred.PermanentTaskFailure, match="Cannot decode"):
        deferred.run(gone_payload(monkeypatch))


def test_the_exceptions_are_the_cores() -> None:
    assert deferred.Error is errors.Error
    assert deferred.PermanentTaskFailure is errors.PermanentTaskFailure
    assert deferred.SingularTaskFailure is errors.SingularTaskFailure
    assert deferred.TaskHandler is deferred.Handler


# -- defer: each option reaches the request -----------------------------------------------------


def test_defer_posts_to_the_deferred_url_on_the_default_queue(im_task_recorder: RecordingTransport) -> None:
    handle = deferred.defer(record, "a", key="value")
    (request,) = im_task_recorder.requests
    assert (request.url, request.queue, request.schedule_time) == (DEFERRED_URL, "default", None)
    assert request.headers == {"Content-Type": "application/octet-stream"}
    assert (handle.url, handle.queue) == (DEFERRED_URL, "default")
    assert [r.status for r in im_task_recorder.run_all()] == [200]
    assert sink.events() == [("a", ("key", "value"))]


def test_other_keyword_arguments_go_to_the_callable(im_task_recorder: RecordingTransport) -> None:
    def keywords(**kwargs: Any) -> None:
        sink.record(sorted(kwargs.items()))

    deferred.defer(keywords, countdown=5, queue="not-an-option")
    (request,) = im_task_recorder.requests
    assert (request.schedule_time, request.queue) == (None, "default")
    im_task_recorder.run_all()
    assert sink.events() == [[("countdown", 5), ("queue", "not-an-option")]]


def test_countdown_and_eta_schedule_the_task(im_task_recorder: RecordingTransport) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    deferred.defer(add, 1, 2, _countdown=60)
    eta = (before + dt.timedelta(days=2)).replace(microsecond=0)
    deferred.defer(add, 1, 2, _eta=eta.replace(tzinfo=None))  # naive: UTC
    first, second = im_task_recorder.requests
    assert first.schedule_time is not None
    assert dt.timedelta(seconds=59) < first.schedule_time - before < dt.timedelta(seconds=61)
    assert second.schedule_time == eta
    with pytest.raises(ConfigurationError, match="either countdown or eta"):
        deferred.defer(add, 1, 2, _countdown=1, _eta=eta)


def test_name_target_queue_and_retry_options_reach_the_request(im_task_recorder: RecordingTransport) -> None:
    class TaskRetryOptions:  # App Engine's, duck-typed: attributes of the same names
        task_retry_limit = 3
        min_backoff_seconds = 2.0
        max_backoff_seconds = None

    deferred.defer(add, 1, 2, _name="n-1", _target="worker", _queue="mail", _retry_options={"task_retry_limit": 5})
    deferred.defer(add, 1, 2, _retry_options=TaskRetryOptions())
    first, second = im_task_recorder.requests
    assert (first.name, first.target, first.queue, first.url) == ("n-1", "worker", "mail", DEFERRED_URL)
    assert first.retry_options == RetryOptions(task_retry_limit=5)
    assert second.retry_options == RetryOptions(task_retry_limit=3, min_backoff_seconds=2.0)


def test_url_none_means_the_queues_own_url(im_task_recorder: RecordingTransport) -> None:
    deferred.defer(record, "q", _url=None, _queue="mail")
    deferred.defer(record, "d", _url=None, _queue=None)
    deferred.defer(record, "c", _url="/custom/deferred")
    assert [r.url for r in im_task_recorder.requests] == ["/_ah/queue/mail", "/_ah/queue/default", "/custom/deferred"]
    assert [r.status for r in im_task_recorder.run_all()] == [200, 200, 200]  # in process, every path is served
    assert sink.events() == ["q", "d", "c"]


def test_a_list_of_queues_spreads_the_tasks(im_task_recorder: RecordingTransport) -> None:
    for _ in range(40):
        deferred.defer(add, 1, 2, _queue=["q1", "q2"])
    assert {r.queue for r in im_task_recorder.requests} == {"q1", "q2"}
    assert {r.url for r in im_task_recorder.requests} == {DEFERRED_URL}
    with pytest.raises(ConfigurationError, match="needs one queue name"):
        deferred.defer(add, 1, 2, _queue=["q1", "q2"], _url=None)


def test_headers_merge_over_the_content_type_and_may_replace_it(im_task_recorder: RecordingTransport) -> None:
    deferred.defer(add, 1, 2, _headers={"X-Trace": "t1"})
    deferred.defer(add, 1, 2, _headers={"Content-Type": "application/x-deferred"})
    first, second = im_task_recorder.requests
    assert first.headers == {"Content-Type": "application/octet-stream", "X-Trace": "t1"}
    assert second.headers == {"Content-Type": "application/x-deferred"}
    with pytest.raises(ConfigurationError, match="cannot be set on a task"):
        deferred.defer(add, 1, 2, _headers={"X-AppEngine-QueueName": "forged"})


def test_transactional_outside_a_transaction_is_refused(im_task_recorder: RecordingTransport) -> None:
    with pytest.raises(BadTransactionStateError):
        deferred.defer(add, 1, 2, _transactional=True)
    assert im_task_recorder.requests == []


def test_a_taken_name_raises_unless_raise_if_exists_is_false(
    im_task_recorder: RecordingTransport, caplog: pytest.LogCaptureFixture
) -> None:
    deferred.defer(add, 1, 2, _name="once")
    with pytest.raises(TaskAlreadyExistsError):
        deferred.defer(add, 1, 2, _name="once")
    with caplog.at_level(logging.INFO, logger="im_task"):
        handle = deferred.defer(add, 1, 2, _name="once", _raise_if_exists=False)
    assert handle.name == "once"
    assert len(im_task_recorder.requests) == 1
    assert any(r.levelno == logging.INFO and "once already exists" in r.getMessage() for r in caplog.records)


def test_arguments_that_do_not_fit_fail_at_defer(im_task_recorder: RecordingTransport) -> None:
    with pytest.raises(EnqueueError, match=r"do not fit add\(a: 'int', b: 'int'\)"):
        deferred.defer(add, 1)
    with pytest.raises(EnqueueError, match="_countdwn is not one of defer"):
        deferred.defer(add, 1, 2, _countdwn=5)
    with pytest.raises(EnqueueError, match="do not fit"):
        deferred.defer(Point(1).moved, 1, 2)
    assert im_task_recorder.requests == []


# -- the deferred endpoint: statuses -----------------------------------------------------------


def _body(obj: Any, *args: Any) -> bytes:
    return deferred.serialize(obj, *args)


def _post(body: bytes, path: str = DEFERRED_URL, **headers: str) -> Any:
    sent = {"Content-Type": "application/octet-stream", **make_task_headers(queue_name="default", task_name="t1")}
    return handle_request("POST", path, body, {**sent, **headers}, "127.0.0.1")


def test_the_deferred_paths_are_the_deferred_endpoints() -> None:
    assert find_endpoint("/_ah/queue/deferred").name == "deferred"  # type: ignore[union-attr]
    assert find_endpoint("/_ah/queue/mail").name == "deferred_queue"  # type: ignore[union-attr]
    assert find_endpoint("/_ah/queue") is None  # a prefix endpoint does not serve its bare path


@pytest.mark.parametrize(
    ("kind", "status"), [("permanent", 200), ("singular", 408), ("error", 500)], ids=["permanent", "singular", "error"]
)
def test_failures_answer_as_the_request_contract_says(kind: str, status: int) -> None:
    response = _post(_body(fail_with, kind))
    assert response.status == status
    assert sink.events() == [("attempt", kind)]
    assert b"Traceback" not in response.body


def test_success_answers_200_at_both_urls() -> None:
    assert _post(_body(record, "one")).status == 200
    assert _post(_body(record, "two"), path="/_ah/queue/mail").status == 200
    assert sink.events() == ["one", "two"]


def test_without_the_task_header_it_is_403_and_nothing_is_unpickled() -> None:
    body = _body(record, sink.Tripwire())
    response = handle_request("POST", DEFERRED_URL, body, {"Content-Type": "application/octet-stream"}, "1.2.3.4")
    assert response.status == 403
    assert sink.events() == []


def test_an_undecodable_payload_answers_200_and_is_dropped(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = gone_payload(monkeypatch)
    with caplog.at_level(logging.ERROR, logger="im_task"):
        assert _post(body).status == 200
    assert any("cannot be decoded" in r.getMessage() for r in caplog.records)


def test_other_methods_answer_405_with_allow_post() -> None:
    response = handle_request("GET", DEFERRED_URL, b"", {}, None)
    assert response.status == 405
    assert ("Allow", "POST") in response.headers


def test_set_level_changes_the_level_of_the_header_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="im_task"):
        _post(_body(add, 1, 2))
        assert not any("with headers" in r.getMessage() for r in caplog.records)  # DEBUG by default
        deferred.set_level(logging.INFO)
        _post(_body(add, 1, 2))
    assert any(r.levelno == logging.INFO and "with headers" in r.getMessage() for r in caplog.records)
    for bad in (True, "INFO", -1, 99):
        with pytest.raises(ConfigurationError, match="logging level"):
            deferred.set_level(bad)  # type: ignore[arg-type]


# -- application and Handler, for code that mounted the original by hand -----------------------------


def _environ(body: bytes, **extra: Any) -> dict[str, Any]:
    headers = make_task_headers(queue_name="default", task_name="t1")
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": DEFERRED_URL,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/octet-stream",
        "wsgi.input": io.BytesIO(body),
        "REMOTE_ADDR": "127.0.0.1",
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()},
    }
    environ.update(extra)
    return environ


def test_handler_post_answers_body_status_and_headers_without_server_software(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SERVER_SOFTWARE", raising=False)
    body, status, headers = deferred.Handler().post(_environ(_body(record, "by hand")))
    assert (body, status) == (b"OK\n", HTTPStatus.OK)
    assert ("Content-Type", "text/plain; charset=utf-8") in headers
    assert sink.events() == ["by hand"]
    _, status, _ = deferred.Handler().post(_environ(_body(fail_with, "singular")))
    assert status == HTTPStatus.REQUEST_TIMEOUT
    with pytest.raises(ConfigurationError, match="WSGI environ"):
        deferred.Handler().post("environ")  # type: ignore[arg-type]


def test_the_application_serves_every_path_over_http() -> None:
    import http.client

    with serve_wsgi(deferred.application) as url:
        host, port = url.removeprefix("http://").split(":")
        for path in (DEFERRED_URL, "/any/path/at/all"):
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            body = _body(record, path)
            headers = {"Content-Type": "application/octet-stream", **make_task_headers(queue_name="q", task_name="t")}
            connection.request("POST", path, body, headers)
            assert connection.getresponse().status == 200
            connection.close()
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", DEFERRED_URL)
        reply = connection.getresponse()
        assert (reply.status, reply.getheader("Allow")) == (405, "POST")
        connection.close()
    assert sink.events() == [DEFERRED_URL, "/any/path/at/all"]


# -- an oversize payload still runs ------------------------------------------------------------


def test_an_oversize_payload_still_runs(im_task_recorder: RecordingTransport) -> None:
    big = b"x" * 300_000  # over App Engine's 100 KB inline limit
    deferred.defer(record, big)
    (request,) = im_task_recorder.requests
    assert (request.body[0], len(request.body) < 1000) == (BOUND_REFERENCE_VERSION, True)  # the payload is stored
    assert [r.status for r in im_task_recorder.run_all()] == [200]
    assert sink.events() == [big]


def test_run_from_datastore_runs_and_deletes_a_stored_payload() -> None:
    from im_task.stores.base import get_payload_store, store_payload

    reference = store_payload(dumps_call(TaskCall(add, (2, 3), {})))
    assert deferred.run_from_datastore(reference) == 5
    assert get_payload_store().get(reference.key) is None  # deleted after success
    with pytest.raises(deferred.PermanentTaskFailure, match="missing"):
        deferred.run_from_datastore(reference)
    kept = store_payload(dumps_call(TaskCall(fail_with, ("error",), {})))
    with pytest.raises(RuntimeError):
        deferred.run_from_datastore(kept)
    assert get_payload_store().get(kept.key) is not None  # kept for a retry
    with pytest.raises(ConfigurationError, match="PayloadReference"):
        deferred.run_from_datastore("a-bare-key")  # type: ignore[arg-type]


# -- legacy payloads: unsigned pickles of the original ---------------------------------------------


def legacy_body(func: Any, *args: Any, **kwargs: Any) -> bytes:
    return pickle.dumps((func, args, kwargs), protocol=2)


@pytest.fixture
def on_app_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production on App Engine standard, with a recording transport (App Engine's default would be Cloud Tasks)."""
    monkeypatch.setenv("GAE_ENV", "standard")
    configure(environment="production", transport=RecordingTransport())


def test_legacy_payloads_are_refused_by_default_and_nothing_is_unpickled(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="im_task"):
        response = _post(legacy_body(sink.record, sink.Tripwire()))
    assert response.status == 403
    assert sink.events() == []
    assert any("accept_legacy_payloads" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("on_app_engine")
def test_opted_in_legacy_payloads_run_only_from_the_app_engine_queue() -> None:
    configure(accept_legacy_payloads=True)
    check_configuration()  # allowed here
    body = legacy_body(record, "legacy")
    sent = {"Content-Type": "application/octet-stream", **make_task_headers(queue_name="default", task_name="t1")}
    assert handle_request("POST", DEFERRED_URL, body, sent, "0.1.0.2").status == 200
    assert handle_request("POST", DEFERRED_URL, body, sent, "203.0.113.9").status == 403
    cloud = {
        "Content-Type": "application/octet-stream",
        **make_task_headers(queue_name="default", task_name="t2", family=CLOUDTASKS),
    }
    assert handle_request("POST", DEFERRED_URL, body, cloud, "0.1.0.2").status == 403
    assert handle_request("POST", "/_ah/task/m/f", body, sent, "0.1.0.2").status == 403  # the task endpoint: never
    assert sink.events() == ["legacy"]
    assert deferred.run(legacy_body(add, 2, 2)) == 4


@pytest.mark.usefixtures("on_app_engine")
def test_legacy_bound_methods_run_through_app_engines_invoke_member(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(accept_legacy_payloads=True)
    fake = types.ModuleType("google.appengine.ext.deferred.deferred")

    def invoke_member(obj: Any, membername: str, *args: Any, **kwargs: Any) -> Any:  # the original's, by name
        raise AssertionError("not this one")

    invoke_member.__module__ = fake.__name__
    invoke_member.__qualname__ = "invoke_member"
    fake.invoke_member = invoke_member  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    body = pickle.dumps((invoke_member, (Point(1, 2), "moved", 3), {}), protocol=2)
    monkeypatch.delitem(sys.modules, fake.__name__)  # the new code has no google.appengine
    assert deferred.run(body) == Point(4, 2)


def test_legacy_opt_in_is_refused_at_start_up_outside_app_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(accept_legacy_payloads=True, transport=RecordingTransport())
    with pytest.raises(ConfigurationError, match="accept_legacy_payloads is set in development"):
        check_configuration()
    configure(environment="production", front_authenticated=True)
    with pytest.raises(ConfigurationError, match="outside App Engine"):
        check_configuration()
    monkeypatch.setenv("GAE_ENV", "localdev")  # dev_appserver is not App Engine
    with pytest.raises(ConfigurationError, match="outside App Engine \\(GAE_ENV is not 'standard' or 'flex'\\)"):
        check_configuration()


def test_legacy_opt_in_on_app_engine_starts_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/migration-deferred.md: im-task logs a warning at start-up while the setting is on."""
    monkeypatch.setenv("GAE_ENV", "standard")
    configure(accept_legacy_payloads=True, environment="production", transport=RecordingTransport())
    with caplog.at_level(logging.WARNING, logger="im_task"):
        check_configuration()
    assert any("accept_legacy_payloads is on" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    configure(accept_legacy_payloads=None)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="im_task"):
        check_configuration()
    assert not any("accept_legacy_payloads" in r.getMessage() for r in caplog.records)


def test_the_legacy_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IM_TASK_ACCEPT_LEGACY_PAYLOADS", "true")
    im_task.config.reset()
    assert im_task.config.get_settings().accept_legacy_payloads is True
    with pytest.raises(ConfigurationError, match="accept_legacy_payloads must be True or False"):
        configure(accept_legacy_payloads="perhaps")


def test_a_task_request_made_by_defer_runs_through_the_task_endpoint_too(im_task_recorder: RecordingTransport) -> None:
    """Same payload format everywhere: a deferred task posted to the task route still runs."""
    deferred.defer(record, "via task route", _url="/_ah/task/legacy/path")
    (request,) = im_task_recorder.requests
    assert isinstance(request, TaskRequest)
    assert [r.status for r in im_task_recorder.run_all()] == [200]
    assert sink.events() == ["via task route"]
