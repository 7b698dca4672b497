"""The Cloud Tasks transport against a real in-process Cloud Tasks server (gRPC, and REST).

What the emulator does not do (name deduplication, size limits, OIDC,
routing, ``retry_config``) is checked on what the transport sent, as the
server received it at the gRPC layer (:mod:`im_task_testsupport.cloudtasks_server`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport, CloudTasksRestTransport
from im_task_testsupport.cloudtasks_server import FakeCloudTasks
from im_task_testsupport.cloudtasks_transports import FAST, LOCATION, PROJECT, transport_for
from im_task_testsupport.processes import run_python
from im_task_testsupport.threads import run_in_threads

from im_task import configure, task
from im_task.errors import (
    ConfigurationError,
    EnqueueError,
    PermissionDeniedError,
    TaskAlreadyExistsError,
    TaskTooLargeError,
    TransientEnqueueError,
    UnknownQueueError,
)
from im_task.retry import RetryOptions
from im_task.runtime import get_transport
from im_task.transports import CloudTasksTransport, TaskRequest
from im_task.transports.cloudtasks import EnqueueRetry
from im_task.transports.cloudtasks.clients import require_library
from im_task.transports.factory import make_transport

QUEUE_PATH = f"projects/{PROJECT}/locations/{LOCATION}/queues"
GAE = {"GAE_ENV": "standard", "GAE_SERVICE": "api", "GAE_VERSION": "v7", "GOOGLE_CLOUD_PROJECT": PROJECT}


def request(queue: str = "default", name: str | None = None, body: bytes = b"payload", **fields: Any) -> TaskRequest:
    headers = {"Content-Type": "application/octet-stream", "X-Trace": "t1"}
    return TaskRequest(queue=queue, url="/_ah/task/app.tasks/work", body=body, headers=headers, name=name, **fields)


@pytest.fixture
def server() -> Iterator[FakeCloudTasks]:
    with FakeCloudTasks() as fake:
        yield fake


@pytest.fixture
def make(server: FakeCloudTasks) -> Iterator[Callable[..., CloudTasksTransport]]:
    """Makes transports talking to ``server`` (closed after the test)."""
    made: list[CloudTasksTransport] = []

    def factory(**kwargs: Any) -> CloudTasksTransport:
        transport = transport_for(server, **kwargs)
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        transport.close()


def only_task(server: FakeCloudTasks) -> tasks_v2.Task:
    (created,) = server.created()
    return created


# -- what is sent ----------------------------------------------------------------


def test_an_app_engine_task_carries_every_option(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    configure(transport=make(environ=GAE))
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)

    @task(
        queue="mail",
        name="welcome-42",
        eta=eta,
        headers={"X-Trace": "abc"},
        dispatch_deadline=90,
        retry_options={"task_retry_limit": 2, "min_backoff_seconds": 5, "max_doublings": 1},
    )
    def send(user: int) -> None: ...

    handle = send(42)
    assert handle.name == "welcome-42"
    created = only_task(server)
    assert created.name == f"{QUEUE_PATH}/mail/tasks/welcome-42"
    app = created.app_engine_http_request
    assert app.relative_uri == send.url
    assert app.http_method == tasks_v2.HttpMethod.POST
    assert app.headers["X-Trace"] == "abc"
    assert app.headers["Content-Type"] == "application/octet-stream"
    assert len(app.body) > 100  # the signed envelope
    assert (app.app_engine_routing.service, app.app_engine_routing.version) == ("api", "v7")
    assert not created.http_request.url
    assert abs(created.schedule_time.timestamp() - eta.timestamp()) < 0.001
    assert created.dispatch_deadline == dt.timedelta(seconds=90)
    retry = created.retry_config
    assert (retry.max_attempts, retry.min_backoff, retry.max_doublings) == (3, dt.timedelta(seconds=5), 1)
    (call,) = [c for c in server.calls if c.method == "CreateTask"]
    assert call.metadata["x-goog-request-params"] == f"parent={QUEUE_PATH}/mail"


def test_countdown_becomes_schedule_time(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    configure(transport=make())
    before = dt.datetime.now(dt.timezone.utc)
    task(lambda: None, countdown=300)()
    delay = only_task(server).schedule_time - before
    assert dt.timedelta(seconds=299) < delay < dt.timedelta(seconds=302)


@pytest.mark.parametrize(
    ("target", "routing"),
    [
        ("worker", ("worker", "", "")),
        ("v2.worker", ("worker", "v2", "")),
        ("1.v2.worker", ("worker", "v2", "1")),
        ("service=worker,instance=4", ("worker", "", "4")),
    ],
)
def test_a_target_overrides_the_routing_defaults(
    server: FakeCloudTasks, make: Callable[..., Any], target: str, routing: tuple[str, str, str]
) -> None:
    make(environ=GAE).enqueue(request(target=target))
    route = only_task(server).app_engine_http_request.app_engine_routing
    assert (route.service, route.version, route.instance) == routing


def test_tasks_from_the_default_service_go_to_the_background_service(
    server: FakeCloudTasks, make: Callable[..., Any]
) -> None:
    environ = {**GAE, "GAE_SERVICE": "default"}
    make(environ=environ, background_service="background").enqueue(request())
    make(environ=GAE, background_service="background").enqueue(request())
    routes = [t.app_engine_http_request.app_engine_routing for t in server.created()]
    assert [(r.service, r.version) for r in routes] == [("background", "v7"), ("api", "v7")]


def test_off_app_engine_no_routing_is_sent(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    make().enqueue(request())
    assert not tasks_v2.AppEngineHttpRequest.pb(only_task(server).app_engine_http_request).HasField(
        "app_engine_routing"
    )


def test_an_http_task_goes_to_the_base_url_with_an_oidc_token(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    transport = make(base_url="https://app.example.com/", service_account_email="tasks@proj.iam.gserviceaccount.com")
    transport.enqueue(request(target="v2.worker", dispatch_deadline=dt.timedelta(minutes=20)))
    make(base_url="https://app.example.com", service_account_email="t@p.iam", audience="my-audience").enqueue(request())
    first, second = server.created()
    http = first.http_request
    assert http.url == "https://app.example.com/_ah/task/app.tasks/work"
    assert http.http_method == tasks_v2.HttpMethod.POST
    assert http.body == b"payload"
    assert http.headers["X-Trace"] == "t1"
    assert http.oidc_token.service_account_email == "tasks@proj.iam.gserviceaccount.com"
    assert http.oidc_token.audience == "https://app.example.com"
    assert not first.app_engine_http_request.relative_uri  # the target applies to App Engine targets only
    assert first.dispatch_deadline == dt.timedelta(minutes=20)
    assert second.http_request.oidc_token.audience == "my-audience"


def test_the_url_comes_from_the_configured_base_url(server: FakeCloudTasks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", server.address)
    configure(
        transport="cloudtasks",
        project=PROJECT,
        location=LOCATION,
        base_url="https://run.example.com",
        service_account_email="tasks@proj.iam.gserviceaccount.com",
        audience="https://run.example.com/tasks",
    )
    task(lambda: None)()
    oidc = only_task(server).http_request.oidc_token
    assert only_task(server).http_request.url.startswith("https://run.example.com/_ah/task/")
    assert (oidc.service_account_email, oidc.audience) == (
        "tasks@proj.iam.gserviceaccount.com",
        "https://run.example.com/tasks",
    )


def test_a_queue_list_spreads_tasks_over_its_queues(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    configure(transport=make())
    spread = task(lambda: None, queue=["q1", "q2", "q3"])
    handles = [spread() for _ in range(60)]
    parents = {t.name.split("/tasks/")[0].rsplit("/", 1)[-1] for t in server.created()}
    assert parents == {"q1", "q2", "q3"}
    assert {h.queue for h in handles} == parents


# -- safe retries --------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "given-name"])
def test_a_lost_answer_is_retried_and_already_exists_then_means_created(
    server: FakeCloudTasks, make: Callable[..., Any], name: str | None
) -> None:
    server.fail("CreateTask", grpc.StatusCode.UNAVAILABLE, after_create=True)
    returned = make().enqueue(request(name=name))
    tries = server.requests("CreateTask")
    assert len(tries) == 2
    assert tries[0].task.name == tries[1].task.name != ""  # the name was fixed before the first try
    assert only_task(server).name == tries[0].task.name
    assert returned == tries[0].task.name.rsplit("/", 1)[-1]
    if name:
        assert returned == name


@pytest.mark.parametrize("code", [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_transient_failures_are_retried(
    server: FakeCloudTasks, make: Callable[..., Any], code: grpc.StatusCode
) -> None:
    server.fail("CreateTask", code, times=2)
    assert make().enqueue(request())
    assert len(server.requests("CreateTask")) == 3
    assert len(server.created()) == 1


def test_retries_end_with_a_transient_error(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    server.fail("CreateTask", grpc.StatusCode.UNAVAILABLE, times=10)
    with pytest.raises(TransientEnqueueError, match="after 4 attempts"):
        make().enqueue(request())
    assert len(server.requests("CreateTask")) == FAST.attempts


def test_without_retries_an_unnamed_task_is_sent_unnamed_once(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    transport = make(retry=EnqueueRetry(attempts=1))
    name = transport.enqueue(request())
    assert name
    assert only_task(server).name.endswith("/" + name)
    assert server.requests("CreateTask")[0].task.name == ""  # the server named it
    server.fail("CreateTask", grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(TransientEnqueueError):
        transport.enqueue(request())
    assert len(server.requests("CreateTask")) == 2


def test_a_taken_name_is_an_error_on_the_first_try(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    transport = make()
    transport.enqueue(request(name="once"))
    with pytest.raises(TaskAlreadyExistsError, match="'once'"):
        transport.enqueue(request(name="once"))
    assert len(server.requests("CreateTask")) == 2


def test_the_decorator_passes_taken_names_to_the_caller(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    configure(transport=make())
    once = task(lambda: None, name="debounce-1")
    once()
    with pytest.raises(TaskAlreadyExistsError):
        once()


# -- errors -------------------------------------------------------------------------


def test_an_unknown_queue_is_reported_at_once() -> None:
    with FakeCloudTasks(queues=["default"]) as fake:
        transport = transport_for(fake)
        with pytest.raises(UnknownQueueError, match="gcloud tasks queues create nope"):
            transport.enqueue(request(queue="nope"))
        assert len(fake.requests()) == 1
        transport.close()


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.UNAUTHENTICATED, PermissionDeniedError),
        (grpc.StatusCode.NOT_FOUND, UnknownQueueError),
        (grpc.StatusCode.ALREADY_EXISTS, TaskAlreadyExistsError),
        (grpc.StatusCode.FAILED_PRECONDITION, EnqueueError),
        (grpc.StatusCode.INVALID_ARGUMENT, EnqueueError),
    ],
)
def test_permanent_failures_are_not_retried(
    server: FakeCloudTasks, make: Callable[..., Any], code: grpc.StatusCode, error: type[EnqueueError]
) -> None:
    server.fail("CreateTask", code)
    with pytest.raises(error) as raised:
        make().enqueue(request())
    assert type(raised.value) is error
    assert len(server.requests("CreateTask")) == 1


def test_a_closed_transport_refuses_tasks(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    transport = make()
    transport.enqueue(request())
    transport.close()
    with pytest.raises(EnqueueError, match="closed"):
        transport.enqueue(request())
    transport.close()


# -- sizes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "limit"), [({}, 100 * 1024), ({"base_url": "https://a.example.com"}, 1024 * 1024)])
def test_the_size_limit_of_each_target_kind_is_checked_before_sending(
    server: FakeCloudTasks, make: Callable[..., Any], kwargs: dict[str, Any], limit: int
) -> None:
    transport = make(**kwargs)
    assert transport.max_task_size == limit
    transport.enqueue(request(body=b"x" * (limit - 1024)))
    with pytest.raises(TaskTooLargeError, match=f"over the limit of {limit} bytes"):
        transport.enqueue(request(body=b"x" * (limit - 100)))  # the body fits; the serialised task does not
    assert len(server.requests()) == 1


def test_the_size_limit_is_configurable(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    with pytest.raises(TaskTooLargeError):
        make(max_task_size=500).enqueue(request(body=b"x" * 600))
    assert server.requests() == []


def test_a_size_refusal_of_the_server_is_task_too_large() -> None:
    with FakeCloudTasks(max_task_size=1000) as fake:
        transport = transport_for(fake)
        with pytest.raises(TaskTooLargeError, match="too large"):
            transport.enqueue(request(body=b"x" * 2000))
        transport.close()


# -- clients: per process, channels, REST --------------------------------------------


def test_the_client_is_made_once_and_shared_by_threads(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    transport = make()
    clients: list[Any] = []

    def send() -> None:
        transport.enqueue(request())
        clients.append(transport.client())

    assert run_in_threads(send) == []
    assert len(server.created()) == 8
    assert len({id(c) for c in clients}) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_its_own_client(server: FakeCloudTasks, make: Callable[..., Any]) -> None:
    transport = make()
    transport.enqueue(request())
    parent_client = transport.client()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's clean-up
        code = 1
        try:
            dropped = transport._clients._value is None
            name = transport.enqueue(request())
            os.write(write, json.dumps([dropped, transport.client() is not parent_client, name]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    dropped, new_client, name = json.loads(report)
    assert dropped, "the at-fork handler did not drop the parent's client"
    assert new_client
    assert any(t.name.endswith("/" + name) for t in server.created())
    assert transport.client() is parent_client  # the parent keeps its own
    transport.enqueue(request())
    assert len(server.created()) == 3


def test_the_emulator_variable_selects_an_insecure_channel(
    server: FakeCloudTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", server.address)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")  # never read
    transport = CloudTasksTransport(PROJECT, LOCATION, retry=FAST)
    assert transport.emulator_host == server.address
    transport.enqueue(request())
    assert isinstance(transport.client().transport, CloudTasksGrpcTransport)
    assert len(server.created()) == 1
    transport.close()


@pytest.mark.parametrize(
    ("kind", "transport_class"), [("grpc", CloudTasksGrpcTransport), ("rest", CloudTasksRestTransport)]
)
def test_without_an_emulator_the_client_uses_the_chosen_transport(
    monkeypatch: pytest.MonkeyPatch, kind: str, transport_class: type
) -> None:
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.delenv("CLOUD_TASKS_EMULATOR_HOST", raising=False)
    transport = CloudTasksTransport(
        PROJECT, LOCATION, transport=kind, credentials=AnonymousCredentials(), environ={}
    )  # no call is made: nothing leaves the machine
    assert transport.emulator_host is None
    assert isinstance(transport.client().transport, transport_class)
    assert transport.client().transport._host.startswith(("cloudtasks.googleapis.com", "https://cloudtasks"))
    transport.close()
    with pytest.raises(ConfigurationError, match="'grpc' or 'rest'"):
        CloudTasksTransport(PROJECT, LOCATION, transport="http")


def test_the_rest_transport_sends_tasks_over_http() -> None:
    with FakeCloudTasks(rest=True) as fake:
        host = fake.rest_endpoint.removeprefix("http://")
        transport = CloudTasksTransport(
            PROJECT, LOCATION, emulator_host=host, transport="rest", retry=FAST, environ=GAE
        )
        name = transport.enqueue(request(name="over-rest", retry_options=RetryOptions(task_retry_limit=1)))
        assert name == "over-rest"
        (call,) = fake.calls
        assert call.protocol == "rest"
        created = only_task(fake)
        assert created.app_engine_http_request.body == b"payload"
        assert created.app_engine_http_request.app_engine_routing.service == "api"
        assert created.retry_config.max_attempts == 2
        with pytest.raises(TaskAlreadyExistsError):  # REST's 409
            transport.enqueue(request(name="over-rest"))
        fake.fail("CreateTask", grpc.StatusCode.UNAVAILABLE, after_create=True)
        assert transport.enqueue(request(name="retried")) == "retried"  # 503, then 409: created
        fake.fail("CreateTask", grpc.StatusCode.PERMISSION_DENIED)
        with pytest.raises(PermissionDeniedError):
            transport.enqueue(request())
        assert isinstance(transport.client().transport, CloudTasksRestTransport)
        transport.close()


def test_a_given_client_or_client_factory_is_used(server: FakeCloudTasks) -> None:
    def factory() -> Any:
        channel = grpc.insecure_channel(server.address)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))

    made = CloudTasksTransport(PROJECT, LOCATION, client=factory, environ={})
    given_client = factory()
    given = CloudTasksTransport(PROJECT, LOCATION, client=given_client, environ={})
    made.enqueue(request())
    given.enqueue(request())
    assert given.client() is given_client
    assert len(server.created()) == 2
    given.close()
    made.close()


# -- where the settings come from ---------------------------------------------------------


def test_project_and_location_are_required_with_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    with pytest.raises(ConfigurationError, match="IM_TASK_PROJECT"):
        CloudTasksTransport(location=LOCATION, environ={})
    with pytest.raises(ConfigurationError, match="IM_TASK_LOCATION"):
        CloudTasksTransport(PROJECT, environ={})
    assert CloudTasksTransport(location=LOCATION, environ={"GOOGLE_CLOUD_PROJECT": "from-env"}).project == "from-env"
    on_gae = CloudTasksTransport(location=LOCATION, environ={"GAE_ENV": "standard", "GAE_APPLICATION": "e~gae-app"})
    assert on_gae.project == "gae-app"


@pytest.fixture
def metadata_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A metadata server on 127.0.0.1 answering the instance's region; yields the paths asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(f"{self.path} {self.headers.get('Metadata-Flavor')}")
            body = b"projects/123/regions/asia-east2"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{http.server_address[1]}")
    try:
        yield asked
    finally:
        http.shutdown()
        http.server_close()


def test_on_app_engine_the_location_comes_from_the_metadata_server(
    server: FakeCloudTasks, metadata_server: list[str]
) -> None:
    transport = CloudTasksTransport(PROJECT, emulator_host=server.address, environ=GAE, retry=FAST)
    assert metadata_server == []  # not asked before the first task
    transport.enqueue(request())
    transport.enqueue(request())
    assert metadata_server == ["/computeMetadata/v1/instance/region Google"]
    assert server.created()[0].name.startswith("projects/proj/locations/asia-east2/queues/default/tasks/")
    transport.close()


def test_no_location_and_no_metadata_server_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # the discard port: nothing answers
    transport = CloudTasksTransport(PROJECT, environ=GAE, emulator_host="127.0.0.1:9")
    with pytest.raises(EnqueueError, match="IM_TASK_LOCATION"):
        transport.enqueue(request())


def test_app_engine_defaults_to_cloud_tasks_with_app_engine_targets(
    server: FakeCloudTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**GAE, "CLOUD_TASKS_EMULATOR_HOST": server.address, "IM_TASK_LOCATION": LOCATION}.items():
        monkeypatch.setenv(name, value)
    transport = get_transport()
    assert isinstance(transport, CloudTasksTransport)
    assert transport.http is None
    task(lambda: None)()
    route = only_task(server).app_engine_http_request.app_engine_routing
    assert (route.service, route.version) == ("api", "v7")


def test_the_cloudtasks_name_is_made_with_the_settings(server: FakeCloudTasks, tmp_path: Path) -> None:
    made = make_transport(
        "cloudtasks",
        data_dir=tmp_path,
        cloud={"project": "p1", "location": "l1", "base_url": None, "emulator_host": server.address},
    )
    assert isinstance(made, CloudTasksTransport)
    assert (made.project, made.location, made.http) == ("p1", "l1", None)
    with pytest.raises(ConfigurationError, match="IM_TASK_PROJECT"):
        make_transport("cloudtasks", data_dir=tmp_path, cloud={"project": None, "location": "l1"})


def test_a_missing_library_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.tasks_v2", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'im-task\[gcp\]'"):
        require_library()


def test_importing_and_making_the_transport_loads_no_google_library() -> None:
    result = run_python(
        """
        import sys
        from im_task.transports import CloudTasksTransport
        CloudTasksTransport("p", "l", environ={})
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("grpc", "google", "asyncio")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_documented_defaults() -> None:
    """docs/transports.md: 100 KB (App Engine targets) or 1 MB (HTTP targets), 5 tries in 60 s, 8 at a time."""
    app_engine = CloudTasksTransport(project="my-project", location="europe-west1", environ={})
    http = CloudTasksTransport(
        project="my-project",
        location="europe-west1",
        base_url="https://app.example.com",
        service_account_email="tasks@my-project.iam.gserviceaccount.com",
        environ={},
    )
    assert (app_engine.max_task_size, http.max_task_size) == (100 * 1024, 1024 * 1024)
    assert (app_engine.retry.attempts, app_engine.retry.deadline) == (5, 60.0)
    assert (app_engine.retry.initial_backoff, app_engine.retry.max_backoff) == (0.25, 8.0)  # docs/deployment.md
    assert app_engine.concurrency == 8
