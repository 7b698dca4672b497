"""The seams of the layered core: one state, the endpoint table, the runtime, shared checks, adapter settings."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import pytest

from im_task import ConfigurationError, EnqueueError, TaskAlreadyExistsError, TaskTooLargeError, configure, task
from im_task.adapter_settings import read_adapter_settings
from im_task.config import ENVIRONMENT_VARIABLES, environment_variable, get_settings, unknown_environment_variables
from im_task.endpoints import ENDPOINTS, TASK_ENDPOINT, Endpoint, endpoints, find_endpoint, handle_request
from im_task.headers import delivery_headers, make_task_headers
from im_task.names import did_you_mean
from im_task.response import TaskResponse, answer
from im_task.runtime import check_configuration, get_transport
from im_task.setting_values import SETTING_NAMES
from im_task.state import STATE
from im_task.transports import ImmediateTransport, RecordingTransport, TaskRequest
from im_task.transports.base import TaskNames, check_request
from im_task.transports.factory import load_transport_setting, make_transport

# -- one state ------------------------------------------------------------------------------


class _Closable:
    def __init__(self) -> None:
        self.closed = 0

    def enqueue(self, request: TaskRequest) -> str:
        return "x"

    def close(self) -> None:
        self.closed += 1


def test_restore_puts_back_every_field_and_closes_what_was_made_meanwhile() -> None:
    before = STATE.snapshot()
    made_inside = _Closable()
    with STATE.lock:
        STATE.explicit["default_queue"] = "changed"
        STATE.taskroute = "/elsewhere"
        STATE.binders.append(object())
        STATE.warmed_up.add("some.module")
        STATE.transport, STATE.owns_transport = made_inside, True
    STATE.restore(before)
    assert "default_queue" not in STATE.explicit
    assert STATE.taskroute == "/_ah/task"
    assert STATE.binders == []
    assert STATE.warmed_up == set()
    assert STATE.transport is None
    assert made_inside.closed == 1


def test_restore_keeps_open_the_transport_of_the_snapshot() -> None:
    outer = _Closable()
    with STATE.lock:
        STATE.transport, STATE.owns_transport = outer, True
    saved = STATE.snapshot()
    STATE.clear()
    assert STATE.transport is None
    assert outer.closed == 0  # clear() closes nothing
    STATE.restore(saved)
    assert STATE.transport is outer
    assert outer.closed == 0
    STATE.restore(STATE.snapshot())  # restoring what is in force closes nothing either
    assert outer.closed == 0


def test_a_snapshot_is_a_copy() -> None:
    saved = STATE.snapshot()
    STATE.warmed_up.add("later")
    assert "later" not in saved.values["warmed_up"]
    STATE.restore(saved)


# -- names ----------------------------------------------------------------------------------


def test_did_you_mean() -> None:
    assert did_you_mean("IM_TASK_SECRTE", sorted(ENVIRONMENT_VARIABLES)) == " (did you mean 'IM_TASK_SECRET'?)"
    assert did_you_mean("secret_key", ["secret", "transport"]) == " (did you mean 'secret'?)"
    assert did_you_mean("completely-else", ["secret", "transport"]) == ""


# -- the endpoint table ---------------------------------------------------------------------


def _probe(method: str, path: str, body: bytes | IO[bytes], headers: Mapping[str, str], remote: str | None) -> Any:
    return answer(200, f"probe {method} {path}")


def test_the_table_lists_the_task_endpoint_under_the_task_route() -> None:
    assert endpoints()[0] is TASK_ENDPOINT  # first: a task route set to /_ah/queue would still serve tasks
    assert TASK_ENDPOINT.path() == "/_ah/task"
    assert TASK_ENDPOINT.path("/jobs/") == "/jobs"
    assert TASK_ENDPOINT.matches("/_ah/task/m/f")
    assert not TASK_ENDPOINT.matches("/_ah/taskx/m/f")
    configure()  # settings are not the route: set_taskroute is
    from im_task import set_taskroute

    set_taskroute("/tasks")
    assert TASK_ENDPOINT.path() == "/tasks"
    assert find_endpoint("/tasks/m/f") is TASK_ENDPOINT


def test_in_process_requests_go_to_the_endpoint_of_their_path(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = Endpoint("probe", _probe, lambda: "/_ah/probe", prefix=False)
    monkeypatch.setattr("im_task.endpoints.ENDPOINTS", [*ENDPOINTS, probe])
    assert find_endpoint("/_ah/probe") is probe
    assert find_endpoint("/_ah/probe/deeper") is None  # not a prefix endpoint
    assert handle_request("POST", "/_ah/probe", b"", {}).body == b"probe POST /_ah/probe\n"
    # a path no endpoint claims goes to the task endpoint (a task may set its own url=): 403 without queue headers
    assert handle_request("POST", "/custom/url", b"", {}).status == 403


# -- the runtime and the transports' handler ------------------------------------------------------


def test_an_in_process_transport_without_a_handler_delivers_to_this_processs_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert STATE.endpoint_handler is handle_request  # registered when im_task.endpoints was loaded
    recorder = RecordingTransport()
    assert recorder.handler is None
    recorder.enqueue(TaskRequest(queue="q", url="/elsewhere", body=b"x"))
    seen: list[str] = []

    def endpoints_of_this_process(method: str, path: str, *rest: Any) -> TaskResponse:
        seen.append(path)
        return answer(200, "ok")

    monkeypatch.setattr(STATE, "endpoint_handler", endpoints_of_this_process)
    assert [r.status for r in recorder.run_all()] == [200]
    assert seen == ["/elsewhere"]


def test_a_transport_keeps_the_handler_it_was_given() -> None:
    seen: list[str] = []

    def handler(method: str, path: str, body: Any, headers: Mapping[str, str], remote: str | None) -> TaskResponse:
        seen.append(headers["X-AppEngine-QueueName"])
        return answer(200, "seen")

    immediate = ImmediateTransport(handler)
    configure(transport=immediate)
    assert get_transport().handler is handler  # type: ignore[attr-defined]

    @task(queue="given")
    def nothing() -> None: ...

    nothing()
    assert seen == ["given"]


def test_without_a_handler_delivery_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(STATE, "endpoint_handler", None)  # as in a process that never loaded im_task.endpoints
    recorder = RecordingTransport()
    recorder.enqueue(TaskRequest(queue="q", url="/_ah/task/m/f", body=b"x"))
    with pytest.raises(ConfigurationError, match=r"pass handler=im_task\.endpoints\.handle_request"):
        recorder.run_all()


def test_a_bad_handler_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="handler must be callable, not str"):
        RecordingTransport("handle_request")  # type: ignore[arg-type]


def test_the_factory_makes_built_ins_and_loads_names_without_making_them(tmp_path: Path) -> None:
    assert isinstance(make_transport("recording", data_dir=tmp_path), RecordingTransport)
    assert load_transport_setting("immediate") is ImmediateTransport
    local = make_transport(None, data_dir=tmp_path)
    try:
        assert local.path == tmp_path / "queue.sqlite3"  # type: ignore[attr-defined]
    finally:
        local.close()
    with pytest.raises(ConfigurationError, match="is neither a built-in name"):
        load_transport_setting("nope")


def test_check_configuration_reports_unknown_environment_variables(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    configure(transport="recording")
    monkeypatch.setenv("IM_TASK_SECRTE", "typo")
    monkeypatch.setenv("IM_TASK_SECRET", "a-real-secret-0123456789abcdefghi")
    with caplog.at_level(logging.WARNING, logger="im_task"):
        check_configuration()
    lines = [r.getMessage() for r in caplog.records]
    assert "$IM_TASK_SECRTE is not an im-task setting (did you mean 'IM_TASK_SECRET'?); it is ignored." in lines
    assert not any("IM_TASK_SECRET " in line for line in lines)
    assert unknown_environment_variables() == [lines[0]]


def test_every_setting_has_its_environment_variable() -> None:
    assert environment_variable("environment") == "IM_TASK_ENV"
    assert environment_variable("data_dir") == "IM_TASK_DATA_DIR"
    assert len(ENVIRONMENT_VARIABLES) == len(SETTING_NAMES)


# -- the checks every transport shares -------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        ("not a request", EnqueueError, "enqueue\\(\\) takes a TaskRequest, not str"),
        (TaskRequest(queue="bad queue", url="/x", body=b""), EnqueueError, "Bad queue name 'bad queue': use 1 to 100"),
        (TaskRequest(queue="q", url="x", body=b""), EnqueueError, "a path starting with '/', not 'x'"),
        (TaskRequest(queue="q", url="/x", body=b"", name="a b"), EnqueueError, "Bad task name 'a b': use 1 to 500"),
        (TaskRequest(queue="q", url="/x", body=b"x" * 200), TaskTooLargeError, "over the inline limit of 100 bytes"),
    ],
)
def test_every_transport_refuses_the_same_requests_with_the_same_message(
    request_: Any, error: type[Exception], message: str, tmp_path: Path
) -> None:
    from im_task.transports import LocalTransport

    transports = [
        RecordingTransport(max_task_size=100),
        ImmediateTransport(max_task_size=100),
        LocalTransport(tmp_path / "q.sqlite3", autostart=False, max_task_size=100),
    ]
    messages = set()
    try:
        for transport in transports:
            with pytest.raises(error, match=message) as info:
                transport.enqueue(request_)
            messages.add(str(info.value).replace(type(transport).__name__, "T"))
    finally:
        transports[2].close()
    assert len(messages) == 1
    check_request(TaskRequest(queue="q", url="/x", body=b""), transports[0])  # a good one passes


def test_task_names_refuse_reuse_per_queue() -> None:
    names = TaskNames()
    names.claim("a", "n")
    names.claim("b", "n")
    with pytest.raises(TaskAlreadyExistsError, match="'n' is already taken on queue 'a'"):
        names.claim("a", "n")
    names.clear()
    names.claim("a", "n")


def test_delivery_headers_drop_the_queues_own_and_add_a_content_type() -> None:
    eta = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    headers = delivery_headers(
        {"X-AppEngine-QueueName": "forged", "X-Own": "1"}, make_task_headers(queue_name="q", task_name="t", eta=eta)
    )
    assert headers["X-AppEngine-QueueName"] == "q"
    assert headers["X-Own"] == "1"
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-AppEngine-TaskETA"] == f"{eta.timestamp():.6f}"


# -- the one parser of adapter settings ------------------------------------------------------------


def test_adapter_settings_are_read_and_checked_in_the_framework_spelling() -> None:
    read = read_adapter_settings(
        {
            "SECRET": "a-long-enough-secret-0123456789ab",
            "ROUTE": "tasks/",
            "REGISTER_LOCAL_TARGET": False,
            "DATABASE": "x",
        },
        source="settings.IM_TASK",
        spell=str.upper,
        extra={"database": lambda value, source: value},
    )
    assert read.core == {"secret": "a-long-enough-secret-0123456789ab"}
    assert read.route == "/tasks"
    assert read.register_local_target is False
    assert read.extra == {"database": "x"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"SECRTE": "x"},
            r"unknown key 'SECRTE' \(did you mean 'SECRET'\?\); known keys: TRANSPORT, SECRET",
        ),
        ({"secret": "x"}, r"settings.IM_TASK: 'secret' must be written 'SECRET'\."),
        ({"MAX_BODY_SIZE": 10}, r"settings.IM_TASK\['MAX_BODY_SIZE'\]: max_body_size must be a whole number"),
        ({"ROUTE": "no spaces"}, r"settings.IM_TASK\['ROUTE'\]: The task route must be an absolute path"),
        ({"REGISTER_LOCAL_TARGET": "yes"}, r"settings.IM_TASK\['REGISTER_LOCAL_TARGET'\] must be True or False"),
    ],
)
def test_adapter_settings_refuse_typos_and_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        read_adapter_settings(values, source="settings.IM_TASK", spell=str.upper)


def test_none_values_are_left_out() -> None:
    assert read_adapter_settings({"secret": None, "route": None}, source="x").core == {}


# -- the guard of the working directory's data --------------------------------------------------------


def test_the_guard_refuses_the_default_data_dir_but_not_a_configured_one(tmp_path: Path) -> None:
    saved_guard = STATE.guard
    STATE.guard = "use a fixture"
    try:
        assert get_settings().local_data_dir() == tmp_path  # configured by the test's isolated settings
        configure(data_dir=None)
        with pytest.raises(ConfigurationError, match="use a fixture"):
            get_settings().local_data_dir()
        configure(transport="recording")
        assert isinstance(get_transport(), RecordingTransport)  # no local data needed for it
    finally:
        STATE.guard = saved_guard


def test_the_transport_is_made_anew_only_when_a_setting_that_shapes_it_changes() -> None:
    configure(transport="recording")
    made = get_transport()
    configure(default_queue="other", max_body_size=4096)  # not the transport's business
    assert get_transport() is made
    configure(base_url="https://app.example.com")  # a Cloud Tasks transport would be made differently
    remade = get_transport()
    assert remade is not made
    assert made.closed  # type: ignore[attr-defined]
