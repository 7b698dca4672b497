"""The endpoint's fast paths (issue 13) give what the general code they stand in for gives.

Each is checked against that code: instances made by ``instance_of`` against
the dataclass's own ``__init__``, the binding's JSON read by the C scanner
against ``json.loads``, the headers a task sees against the dictionaries they
were merged from, the name cache of ``environ_headers`` against the
conversion itself, and ``TaskWSGIApp``'s mount table against
``Endpoint.matches``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from im_task import get_task_headers, get_task_name
from im_task._instances import instance_of
from im_task.context import task_context
from im_task.endpoints import ENDPOINTS, Endpoint
from im_task.envelope import CONTENT_TYPE, Binding
from im_task.executor import _headers_for_task
from im_task.headers import APPENGINE, CLOUDTASKS, FAMILIES, Headers, TaskHeaders, make_task_headers
from im_task.reruns import RERUN_HEADER
from im_task.response import TaskResponse, answer, outcome_of_status
from im_task.serialization import TaskCall, dumps_call, loads_call
from im_task.wsgi import _KEPT_NAMES, TaskWSGIApp, environ_headers

BINDING = Binding("/_ah/task/app.tasks/send", "mail", 1_700_000_000, 1_702_678_401, "ab" * 12, {"X-Tenant": "a"}, 9)


def test_an_instance_of_is_what_the_dataclass_makes() -> None:
    fields = {"queue_name": "q", "task_name": "t", "retry_count": 2, "execution_count": 1, "eta": None}
    fields["family"] = CLOUDTASKS
    made = instance_of(TaskHeaders, dict(fields))
    assert made == TaskHeaders(**fields)
    assert hash(made) == hash(TaskHeaders(**fields))
    assert repr(made) == repr(TaskHeaders(**fields))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.retry_count = 0  # type: ignore[misc]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("eta", [None, dt.datetime(2026, 11, 30, 12, 0, 1, tzinfo=dt.timezone.utc)])
def test_parsed_task_headers_are_those_the_dataclass_makes(family: str, eta: dt.datetime | None) -> None:
    sent = make_task_headers(queue_name="projects/p/locations/l/queues/q", task_name="t", retry_count=3, eta=eta)
    sent = {name.replace(APPENGINE, family): value for name, value in sent.items()}
    parsed = TaskHeaders.parse(sent)
    assert parsed == TaskHeaders("q", "t", 3, 0, eta, family)
    assert vars(parsed) == vars(TaskHeaders("q", "t", 3, 0, eta, family))


@pytest.mark.parametrize(
    ("status", "outcome", "extra"),
    [(200, "", {}), (200, "gave-up", {}), (405, "", {"Allow": "POST"}), (500, "", {}), (408, "retry", {})],
)
def test_an_answer_is_the_response_the_dataclass_makes(status: int, outcome: str, extra: dict[str, str]) -> None:
    error = RuntimeError("boom")
    made = answer(status, "Said.", error, outcome=outcome, **extra)
    expected_outcome = outcome or outcome_of_status(status)
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("X-Im-Task-Outcome", expected_outcome)]
    expected = TaskResponse(status, b"Said.\n", [*headers, *extra.items()], error, outcome)
    assert made == expected
    assert vars(made) == vars(expected)
    with pytest.raises(ValueError, match="outcome must be one of"):
        answer(200, "Said.", outcome="maybe")


def test_a_binding_reads_back_as_it_was_made() -> None:
    data = BINDING.to_bytes()
    assert Binding.from_bytes(data) == BINDING
    assert vars(Binding.from_bytes(data)) == vars(BINDING)


def test_a_binding_with_white_space_around_its_json_reads_as_json_loads_reads_it() -> None:
    fields = json.loads(BINDING.to_bytes())
    for text in (" " + json.dumps(fields), json.dumps(fields, indent=2) + "\n", json.dumps(fields) + "  "):
        assert Binding.from_bytes(text.encode()) == BINDING


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        BINDING.to_bytes() + b"{}",
        BINDING.to_bytes() + b" x",
        b"\xff" + BINDING.to_bytes(),
        BINDING.to_bytes().replace(b'"made":1700000000', b'"made":true'),
        BINDING.to_bytes().replace(b'"made":1700000000', b'"made":-1'),
        BINDING.to_bytes().replace(b'"made":1700000000', b'"made":1.5'),
        BINDING.to_bytes().replace(b'"due":9', b'"due":false'),
        BINDING.to_bytes().replace(b'"queue":"mail"', b'"queue":7'),
        BINDING.to_bytes().replace(b'"X-Tenant":"a"', b'"X-Tenant":1'),
        BINDING.to_bytes().replace(b'"headers":{"X-Tenant":"a"}', b'"headers":[]'),
        BINDING.to_bytes().replace(b'"id"', b'"iD"'),
    ],
)
def test_a_malformed_binding_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"not an envelope binding|Expecting|Extra data|codec|Unterminated"):
        Binding.from_bytes(data)


def _merged(headers: Headers, binding: Binding, family: str) -> Headers:
    """What a task sees, as the endpoint built it before its fast path: dictionaries merged, then lowered."""
    names = ["QueueName", "TaskName", "TaskRetryCount", "TaskExecutionCount", "TaskETA", "TaskPreviousResponse"]
    names.append("TaskRetryReason")
    given = {family + name: headers[family + name] for name in names if family + name in headers}
    if RERUN_HEADER in headers:
        given[RERUN_HEADER] = headers[RERUN_HEADER]
    return Headers({**given, "Content-Type": CONTENT_TYPE, **binding.headers})


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "own",
    [{}, {"X-Tenant": "a"}, {"x-tenant": "b", "X-Other": "c"}, {"content-type": "text/plain", "X-IM-TASK-RERUN": "x"}],
)
def test_the_headers_a_task_sees_are_those_the_merge_made(family: str, own: dict[str, str]) -> None:
    sent = make_task_headers(queue_name="q", task_name="t", family=family, previous_response=500, retry_reason="x")
    other = CLOUDTASKS if family == APPENGINE else APPENGINE
    request = Headers(
        {
            **{name.lower(): value for name, value in sent.items()},
            other + "QueueName": "forged",
            "X-AppEngine-User-Is-Admin": "1",
            "Authorization": "Bearer token",
            "x-im-task-rerun": "mark",
        }
    )
    binding = dataclasses.replace(BINDING, headers=own)
    seen = _headers_for_task(request, binding, family)
    expected = _merged(request, binding, family)
    assert list(seen.items()) == list(expected.items())
    assert "authorization" not in seen
    assert other + "QueueName" not in seen


def test_picked_headers_keep_the_order_and_names_given_and_more_wins_in_any_case() -> None:
    headers = Headers({"x-b": "2", "X-A": "1", "X-C": "3"})
    picked = headers._picked([("x-a", "X-A"), ("x-missing", "X-Missing"), ("x-b", "X-B")], {"x-A": "new", "X-D": "4"})
    assert list(picked.items()) == [("x-A", "new"), ("X-B", "2"), ("X-D", "4")]
    assert headers._picked([]) == {}
    entries = {"x-e": ("X-E", "5")}
    assert Headers._from_entries(entries)["X-e"] == "5"


def test_environ_header_names_are_kept_up_to_a_bound_and_always_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("im_task.wsgi._header_names", {})
    import im_task.wsgi as wsgi

    many = {f"HTTP_X_NAME_{index}": str(index) for index in range(_KEPT_NAMES + 100)}
    many["HTTP_X_APPENGINE_QUEUENAME"] = "q"
    for _ in range(2):  # the second time from the names kept, and past the bound from the conversion
        headers = environ_headers(many)
        assert len(wsgi._header_names) == _KEPT_NAMES
        assert [headers[f"x-name-{index}"] for index in range(_KEPT_NAMES + 100)] == [
            str(index) for index in range(_KEPT_NAMES + 100)
        ]
        assert list(headers)[:2] == ["X-Name-0", "X-Name-1"]
        assert headers["X-AppEngine-QueueName"] == "q"


def test_a_task_context_is_left_as_it_was_entered_after_an_error_and_when_nested() -> None:
    outer = TaskHeaders("q", "outer")
    inner = TaskHeaders("q", "inner")
    seen = []

    def fail_inside() -> None:
        with task_context(inner, Headers({"X-Which": "inner"})):
            seen.append(get_task_name())
            raise RuntimeError("boom")

    with task_context(outer, Headers({"X-Which": "outer"})):
        with pytest.raises(RuntimeError, match="boom"):
            fail_inside()
        assert seen == ["inner"]
        assert get_task_name() == "outer"
        assert get_task_headers()["X-Which"] == "outer"
    assert get_task_name() is None


@pytest.mark.parametrize("route", ["/_ah/task", "/internal/tasks"])
def test_the_wsgi_apps_mount_table_finds_what_endpoint_matches_finds(route: str) -> None:
    app = TaskWSGIApp(route=route)
    paths = [route, route + "/", route + "/m/f", route + "x/m/f", "/_ah/queue/deferred", "/_ah/queue/deferred/x"]
    paths += ["/_ah/queue/", "/_ah/queue/q", "/_ah/im-task/sweep", "/_ah/im-task/sweep/", "/", "", "/other"]
    for path in paths:
        expected = next((endpoint for endpoint in ENDPOINTS if endpoint.matches(path, route)), None)
        assert app.endpoint_for(path) is expected, path


@pytest.mark.parametrize(
    "call",
    [
        TaskCall(print),
        TaskCall(print, (1, "two"), {"sep": "-"}, includeheaders=True, retry_limit=3, description="print"),
    ],
)
def test_a_decoded_call_is_the_call_the_dataclass_makes(call: TaskCall) -> None:
    decoded = loads_call(dumps_call(call))
    assert decoded == call
    assert vars(decoded) == vars(call)


def test_an_endpoint_that_matches_its_own_way_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    class Anywhere(Endpoint):
        def matches(self, path: str, taskroute: str | None = None) -> bool:
            return path.endswith("/anywhere")

    anywhere = Anywhere("anywhere", ENDPOINTS[0].handler, lambda: "/unused", prefix=False)
    monkeypatch.setattr("im_task.endpoints.ENDPOINTS", [*ENDPOINTS, anywhere])
    app = TaskWSGIApp()
    assert app.endpoint_for("/deep/down/anywhere") is anywhere
    assert app.endpoint_for("/_ah/task/m/f") is ENDPOINTS[0]
    assert app.endpoint_for("/elsewhere") is None
