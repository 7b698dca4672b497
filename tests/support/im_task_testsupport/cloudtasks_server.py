"""A real, in-process server of the Cloud Tasks API, to test what the Cloud Tasks transport sends.

:class:`FakeCloudTasks` serves ``google.cloud.tasks.v2.CloudTasks`` over gRPC
(``grpc.server`` with generic handlers and the messages of
``google.cloud.tasks_v2``) on a free port of 127.0.0.1, and optionally the
REST mapping of ``CreateTask`` over HTTP. It keeps what the emulator does
not: task names are refused when reused (``ALREADY_EXISTS``), an optional
size limit (``INVALID_ARGUMENT``), unknown queues (``NOT_FOUND``) and
``BatchCreateTasks`` as Cloud Tasks has it (a long-running operation, done at
once or after some ``GetOperation`` polls, whose metadata lists the items
that failed). Any method can be made to fail with a status code, before or
after it created the task (an answer lost on the way back). It delivers
nothing: tests read :attr:`FakeCloudTasks.calls` and
:attr:`FakeCloudTasks.tasks`.

Example:
    >>> with FakeCloudTasks() as server:  # doctest: +SKIP
    ...     transport = CloudTasksTransport("p", "l", emulator_host=server.address)
    ...     server.fail("CreateTask", grpc.StatusCode.UNAVAILABLE, after_create=True)
    ...     transport.enqueue(request)
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import threading
import time
from collections.abc import Iterable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.cloud import tasks_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, json_format
from google.rpc import status_pb2

__all__ = ["Call", "FakeCloudTasks"]

SERVICE = "google.cloud.tasks.v2.CloudTasks"
OPERATIONS = "google.longrunning.Operations"
QUEUE_PATH = re.compile(r"projects/[^/]+/locations/[^/]+/queues/[^/]+")
REST_CREATE = re.compile(r"/v2/(?P<parent>projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks")
#: HTTP status of each gRPC code, as Google's REST front answers.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


@dataclass(frozen=True)
class Call:
    """One call the server received.

    Attributes:
        method: ``"CreateTask"``, ``"BatchCreateTasks"`` or ``"GetOperation"``.
        request: The request message (proto-plus for the Cloud Tasks methods).
        metadata: The call's metadata (gRPC) or headers (REST), lower-case keys.
        protocol: ``"grpc"`` or ``"rest"``.
    """

    method: str
    request: Any
    metadata: dict[str, str]
    protocol: str = "grpc"


@dataclass
class _Fault:
    code: grpc.StatusCode
    message: str
    times: int
    after_create: bool


class _Failure(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Operation:
    message: operations_pb2.Operation
    polls_left: int
    final: operations_pb2.Operation = field(default_factory=operations_pb2.Operation)


class FakeCloudTasks:
    """An in-process Cloud Tasks server on 127.0.0.1 (gRPC, and REST for ``CreateTask``).

    Args:
        batch: Whether ``BatchCreateTasks`` is implemented; False answers UNIMPLEMENTED, as the emulator does.
        operation_polls: ``GetOperation`` polls a batch operation needs before it is done (0: done at once).
        queues: The queues that exist (short names); None for any.
        max_task_size: Largest serialised task accepted, or None for no limit.
        create_delay: Seconds each ``CreateTask`` takes (to observe concurrency).
        rest: Also serve ``CreateTask`` over REST at :attr:`rest_endpoint`.
    """

    def __init__(
        self,
        *,
        batch: bool = True,
        operation_polls: int = 0,
        queues: Iterable[str] | None = None,
        max_task_size: int | None = None,
        create_delay: float = 0.0,
        rest: bool = False,
    ) -> None:
        self.batch = batch
        self.operation_polls = operation_polls
        self.queues = None if queues is None else set(queues)
        self.max_task_size = max_task_size
        self.create_delay = create_delay
        self.calls: list[Call] = []
        self.tasks: dict[str, tasks_v2.Task] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: dict[str, list[_Fault]] = {}
        self._task_faults: dict[str, tuple[grpc.StatusCode, str]] = {}
        self._operations: dict[str, _Operation] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._rest = rest
        self.address = ""
        self.rest_endpoint = ""

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeCloudTasks:
        """Starts serving on free ports of 127.0.0.1; sets :attr:`address` (and :attr:`rest_endpoint`)."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="fake-cloudtasks"))
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "CreateTask": grpc.unary_unary_rpc_method_handler(
                            self._grpc_create,
                            request_deserializer=tasks_v2.CreateTaskRequest.deserialize,
                            response_serializer=tasks_v2.Task.serialize,
                        ),
                        "BatchCreateTasks": grpc.unary_unary_rpc_method_handler(
                            self._grpc_batch,
                            request_deserializer=tasks_v2.BatchCreateTasksRequest.deserialize,
                            response_serializer=operations_pb2.Operation.SerializeToString,
                        ),
                    },
                ),
                grpc.method_handlers_generic_handler(
                    OPERATIONS,
                    {
                        "GetOperation": grpc.unary_unary_rpc_method_handler(
                            self._grpc_get_operation,
                            request_deserializer=operations_pb2.GetOperationRequest.FromString,
                            response_serializer=operations_pb2.Operation.SerializeToString,
                        )
                    },
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        if self._rest:
            self._http = ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self))
            self._http.daemon_threads = True
            threading.Thread(target=self._http.serve_forever, name="fake-cloudtasks-rest", daemon=True).start()
            self.rest_endpoint = f"http://127.0.0.1:{self._http.server_address[1]}"
        return self

    def stop(self) -> None:
        """Stops serving (at once; calls in flight are cancelled). May be called more than once."""
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> FakeCloudTasks:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- scripting -------------------------------------------------------------

    def fail(
        self, method: str, code: grpc.StatusCode, message: str = "", *, times: int = 1, after_create: bool = False
    ) -> None:
        """Makes the next ``times`` calls of ``method`` fail with ``code``.

        Args:
            method: ``"CreateTask"``, ``"BatchCreateTasks"`` or ``"GetOperation"``.
            code: The status to answer.
            message: Its message (a default names the code).
            times: How many calls fail.
            after_create: Create the task(s) first, then fail: the answer is lost, the task exists.
        """
        with self._lock:
            self._faults.setdefault(method, []).append(
                _Fault(code, message or f"injected {code.name}", times, after_create)
            )

    def fail_task(self, task_id: str, code: grpc.StatusCode, message: str = "") -> None:
        """Makes the creation of the task with this id (its short name) fail, alone or in a batch."""
        with self._lock:
            self._task_faults[task_id] = (code, message or f"injected {code.name}")

    def requests(self, method: str = "CreateTask") -> list[Any]:
        """The requests of one method received so far, in order."""
        with self._lock:
            return [call.request for call in self.calls if call.method == method]

    def created(self) -> list[tasks_v2.Task]:
        """The tasks created, in order."""
        with self._lock:
            return list(self.tasks.values())

    # -- the service -----------------------------------------------------------

    def _record(self, method: str, request: Any, metadata: dict[str, str], protocol: str) -> _Fault | None:
        with self._lock:
            self.calls.append(Call(method, request, metadata, protocol))
            faults = self._faults.get(method)
            if not faults:
                return None
            fault = faults[0]
            fault.times -= 1
            if fault.times <= 0:
                faults.pop(0)
            return fault

    def _create_one(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        parent = request.parent
        if not QUEUE_PATH.fullmatch(parent):
            raise _Failure(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {parent}")
        if self.queues is not None and parent.rsplit("/", 1)[-1] not in self.queues:
            raise _Failure(grpc.StatusCode.NOT_FOUND, "Requested entity was not found.")
        task = tasks_v2.Task(request.task)
        if self.max_task_size is not None and tasks_v2.Task.pb(task).ByteSize() > self.max_task_size:
            raise _Failure(grpc.StatusCode.INVALID_ARGUMENT, "Task size too large")
        with self._lock:
            if not task.name:
                task.name = f"{parent}/tasks/{next(self._ids):020d}"
            elif not task.name.startswith(parent + "/tasks/"):
                raise _Failure(grpc.StatusCode.INVALID_ARGUMENT, f"Task name {task.name} is not in queue {parent}")
            short = task.name.rsplit("/", 1)[-1]
            if short in self._task_faults:
                raise _Failure(*self._task_faults[short])
            if task.name in self.tasks:
                raise _Failure(grpc.StatusCode.ALREADY_EXISTS, "Requested entity already exists")
            task.create_time = datetime.datetime.now(datetime.timezone.utc)
            task.view = tasks_v2.Task.View.BASIC
            self.tasks[task.name] = task
        return task

    def create(self, request: tasks_v2.CreateTaskRequest, metadata: dict[str, str], protocol: str) -> tasks_v2.Task:
        """``CreateTask``, for either protocol.

        Raises:
            _Failure: The status to answer.
        """
        fault = self._record("CreateTask", request, metadata, protocol)
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.create_delay:
                time.sleep(self.create_delay)
            if fault is not None and not fault.after_create:
                raise _Failure(fault.code, fault.message)
            task = self._create_one(request)
            if fault is not None:
                raise _Failure(fault.code, fault.message)
            return task
        finally:
            with self._lock:
                self.in_flight -= 1

    def _grpc_create(self, request: tasks_v2.CreateTaskRequest, context: grpc.ServicerContext) -> tasks_v2.Task:
        try:
            return self.create(request, _metadata(context), "grpc")
        except _Failure as failure:
            context.abort(failure.code, failure.message)
            raise  # pragma: no cover - abort raises

    def _grpc_batch(
        self, request: tasks_v2.BatchCreateTasksRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        fault = self._record("BatchCreateTasks", request, _metadata(context), "grpc")
        if not self.batch:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found: BatchCreateTasks")
        if fault is not None and not fault.after_create:
            context.abort(fault.code, fault.message)
        if len(request.requests) > 100:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "A batch holds at most 100 tasks.")
        created: list[tasks_v2.Task] = []
        failed: dict[int, status_pb2.Status] = {}
        for index, item in enumerate(request.requests):
            if item.parent != request.parent:
                failed[index] = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="parent")
                continue
            try:
                created.append(self._create_one(item))
            except _Failure as failure:
                failed[index] = status_pb2.Status(code=failure.code.value[0], message=failure.message)
        if fault is not None:
            context.abort(fault.code, fault.message)
        state = tasks_v2.BatchCreateTasksMetadata.State
        metadata = tasks_v2.BatchCreateTasksMetadata(
            state=state.PARTIALLY_SUCCEEDED if failed else state.SUCCEEDED, failed_requests=failed
        )
        response = tasks_v2.BatchCreateTasksResponse(tasks=created)
        name = f"{request.parent}/operations/{next(self._ids)}"
        final = operations_pb2.Operation(name=name, done=True)
        final.metadata.CopyFrom(_pack(tasks_v2.BatchCreateTasksMetadata.pb(metadata)))
        final.response.CopyFrom(_pack(tasks_v2.BatchCreateTasksResponse.pb(response)))
        if self.operation_polls <= 0:
            return final
        running = operations_pb2.Operation(name=name, done=False)
        running.metadata.CopyFrom(
            _pack(tasks_v2.BatchCreateTasksMetadata.pb(tasks_v2.BatchCreateTasksMetadata(state=state.RUNNING)))
        )
        with self._lock:
            self._operations[name] = _Operation(running, self.operation_polls, final)
        return running

    def _grpc_get_operation(
        self, request: operations_pb2.GetOperationRequest, context: grpc.ServicerContext
    ) -> operations_pb2.Operation:
        fault = self._record("GetOperation", request, _metadata(context), "grpc")
        if fault is not None:
            context.abort(fault.code, fault.message)
        with self._lock:
            operation = self._operations.get(request.name)
            if operation is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"No operation {request.name}")
            operation.polls_left -= 1
            return operation.final if operation.polls_left <= 0 else operation.message


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {str(key).lower(): str(value) for key, value in context.invocation_metadata()}


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _rest_handler(server: FakeCloudTasks) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            match = REST_CREATE.fullmatch(path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if match is None:
                self._answer(404, {"error": {"code": 404, "message": f"No route {path}", "status": "NOT_FOUND"}})
                return
            message = tasks_v2.CreateTaskRequest.pb(tasks_v2.CreateTaskRequest())
            json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
            request = tasks_v2.CreateTaskRequest.wrap(message)
            request.parent = match["parent"]
            try:
                task = server.create(request, {k.lower(): v for k, v in self.headers.items()}, "rest")
            except _Failure as failure:
                status = HTTP_STATUS.get(failure.code, 500)
                self._answer(
                    status, {"error": {"code": status, "message": failure.message, "status": failure.code.name}}
                )
                return
            self._answer(200, json.loads(json_format.MessageToJson(tasks_v2.Task.pb(task))))

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Logs nothing."""

    return Handler
