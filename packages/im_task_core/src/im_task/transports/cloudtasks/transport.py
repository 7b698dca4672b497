"""``CloudTasksTransport``: tasks on Google Cloud Tasks, App Engine or HTTP targets."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from im_task.errors import ConfigurationError, EnqueueError, TaskTooLargeError, TransientEnqueueError
from im_task.transports.base import INLINE_TASK_LIMIT, TaskRequest, Transport, check_open, check_request
from im_task.transports.cloudtasks.building import AppEngineRouting, HttpTarget, build_task, default_routing
from im_task.transports.cloudtasks.clients import INSTALL_HINT, PerProcess, require_library
from im_task.transports.cloudtasks.errors import (
    api_error_from_status,
    is_already_exists,
    is_transient,
    is_unimplemented,
    library_error,
)

__all__ = ["BATCH_LIMIT", "EMULATOR_HOST_VARIABLE", "HTTP_TASK_LIMIT", "CloudTasksTransport", "EnqueueRetry"]

logger = logging.getLogger("im_task.cloudtasks")

#: Largest task Cloud Tasks takes for HTTP targets.
HTTP_TASK_LIMIT = 1024 * 1024
#: Most tasks one ``BatchCreateTasks`` call takes.
BATCH_LIMIT = 100
#: The environment variable naming a Cloud Tasks emulator (``host:port``); the client library reads none itself.
EMULATOR_HOST_VARIABLE = "CLOUD_TASKS_EMULATOR_HOST"
#: Where App Engine's metadata server tells the region, when no location is configured.
METADATA_REGION = "http://{host}/computeMetadata/v1/instance/region"
_TRANSPORTS = ("grpc", "rest")


@dataclass(frozen=True)
class EnqueueRetry:
    """How a transient failure of ``CreateTask`` is retried (the client library retries none by default).

    A retried task always carries a name fixed before the first try (one is
    made for an unnamed task), so a try that reached Cloud Tasks but whose
    answer was lost cannot make a second task: the retry gets ``ALREADY_EXISTS``,
    which then means "created". Delays grow from ``initial_backoff`` by
    ``multiplier`` up to ``max_backoff``, each shortened by a random part of
    up to a half (jitter), and stop at ``deadline``.

    Attributes:
        attempts: Tries in all, the first included; 1 turns retrying off (and the naming of unnamed tasks).
        initial_backoff: Seconds before the first retry (before jitter).
        max_backoff: Longest delay between tries, in seconds.
        multiplier: Growth of the delay per retry.
        deadline: Seconds after the first try past which no retry starts.
        timeout: Seconds each try waits for an answer (the client library's default is 20).
    """

    attempts: int = 5
    initial_backoff: float = 0.25
    max_backoff: float = 8.0
    multiplier: float = 2.0
    deadline: float = 60.0
    timeout: float = 20.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigurationError(f"EnqueueRetry attempts must be a whole number >= 1, not {self.attempts!r}.")
        for name in ("initial_backoff", "max_backoff", "deadline", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigurationError(f"EnqueueRetry {name} must be a number of seconds >= 0, not {value!r}.")
        if isinstance(self.multiplier, bool) or not isinstance(self.multiplier, (int, float)) or self.multiplier < 1:
            raise ConfigurationError(f"EnqueueRetry multiplier must be >= 1, not {self.multiplier!r}.")

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first), jitter included."""
        base = min(self.initial_backoff * self.multiplier ** (retry_number - 1), self.max_backoff)
        return base * random.uniform(0.5, 1.0)


NO_RETRY = EnqueueRetry(attempts=1)


class _Prepared(NamedTuple):
    """A task ready to send: its queue and the queue's path, its name (None: the queue names it), its request."""

    queue: str
    parent: str
    name: str | None
    create: Any


class _BatchUnimplemented(Exception):
    """The server answered ``BatchCreateTasks`` with UNIMPLEMENTED (the emulator does)."""


class CloudTasksTransport(Transport):
    """Sends tasks to Google Cloud Tasks (google-cloud-tasks 2.25 or later: ``pip install 'im-task[gcp]'``).

    With ``base_url``, tasks are HTTP-target tasks POSTed to ``base_url`` plus
    the task's path, carrying an OIDC token of ``service_account_email`` for
    ``audience`` (``base_url`` by default) when an account is given. Without
    it, tasks are App Engine-target tasks: ``relative_uri`` is the task's
    path, and a task that names no ``target`` runs on the service and version
    that enqueued it (``GAE_SERVICE``, ``GAE_VERSION``), or on
    ``background_service`` when enqueued from the default service.

    The client is made on first use in each process and shared by its
    threads; a forked child makes its own (clients are not fork-safe).
    ``CreateTask`` failures that may pass (UNAVAILABLE, DEADLINE_EXCEEDED...)
    are retried as ``retry`` says, safely: see :class:`EnqueueRetry`.

    Args:
        project: The Google Cloud project; None for ``GOOGLE_CLOUD_PROJECT`` (or App Engine's ``GAE_APPLICATION``).
        location: The queues' location, e.g. ``"europe-west1"``; None asks App Engine's metadata server on
            first use (on App Engine only).
        base_url: The application's absolute URL, for HTTP targets; None for App Engine targets.
        service_account_email: The account of HTTP-target tasks' OIDC tokens.
        audience: The tokens' audience; None for ``base_url``.
        emulator_host: ``host:port`` of a Cloud Tasks emulator, reached over an insecure channel without
            credentials; None for ``$CLOUD_TASKS_EMULATOR_HOST``, or Google's service when that is unset too.
        client: A ``CloudTasksClient``, or a callable making one (called once per process); None to make one.
        transport: ``"grpc"`` or ``"rest"``: how a client made here talks to Cloud Tasks.
        background_service: App Engine service for tasks enqueued from the default service.
        max_task_size: Largest task sent, in bytes of the serialised task; None for 100 KB (App Engine
            targets) or 1 MB (HTTP targets).
        retry: Retry policy of ``CreateTask``; ``EnqueueRetry(attempts=1)`` for none.
        concurrency: Most ``CreateTask`` calls in flight when a bulk enqueue cannot use ``BatchCreateTasks``.
        credentials: Credentials of a client made here; None for the application default credentials.
        client_options: ``client_options`` of a client made here (e.g. ``{"api_endpoint": ...}``).
        async_client: A ``CloudTasksAsyncClient`` or a callable making one (called once per event loop);
            None to make one (over gRPC) or, with ``client`` given or the REST transport, to run
            :meth:`enqueue` in a thread.
        environ: The environment to read (``GAE_*``, ``GOOGLE_CLOUD_PROJECT``...); None for ``os.environ``.

    Raises:
        ConfigurationError: For a bad argument, no project or location, or google-cloud-tasks missing.

    Example:
        >>> from im_task import configure
        >>> configure(transport=CloudTasksTransport("my-project", "europe-west1"))  # doctest: +SKIP
    """

    def __init__(
        self,
        project: str | None = None,
        location: str | None = None,
        *,
        base_url: str | None = None,
        service_account_email: str | None = None,
        audience: str | None = None,
        emulator_host: str | None = None,
        client: Any = None,
        transport: str = "grpc",
        background_service: str | None = None,
        max_task_size: int | None = None,
        retry: EnqueueRetry = EnqueueRetry(),
        concurrency: int = 8,
        credentials: Any = None,
        client_options: Any = None,
        async_client: Any = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        _check_library_installed()
        env = os.environ if environ is None else environ
        if transport not in _TRANSPORTS:
            raise ConfigurationError(f"transport must be 'grpc' or 'rest', not {transport!r}.")
        if not isinstance(retry, EnqueueRetry):
            raise ConfigurationError(f"retry must be an EnqueueRetry, not {type(retry).__name__}.")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a whole number >= 1, not {concurrency!r}.")
        if max_task_size is not None and (
            isinstance(max_task_size, bool) or not isinstance(max_task_size, int) or max_task_size < 1
        ):
            raise ConfigurationError(f"max_task_size must be a whole number of bytes > 0, not {max_task_size!r}.")
        self.project = project or env.get("GOOGLE_CLOUD_PROJECT") or _gae_project(env.get("GAE_APPLICATION"))
        if not self.project:
            raise ConfigurationError(
                "The Cloud Tasks transport needs a project: set IM_TASK_PROJECT (or configure(project=...), or "
                "GOOGLE_CLOUD_PROJECT), or pass CloudTasksTransport(project=...)."
            )
        self.on_app_engine = bool(env.get("GAE_ENV"))
        if not location and not self.on_app_engine:
            raise ConfigurationError(
                "The Cloud Tasks transport needs the queues' location (e.g. 'europe-west1'): set IM_TASK_LOCATION "
                "(or configure(location=...)), or pass CloudTasksTransport(location=...). On App Engine it is "
                "read from the metadata server."
            )
        self._location = location or None
        self.http: HttpTarget | None = None
        if base_url is not None:
            parts = urlsplit(base_url) if isinstance(base_url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
                raise ConfigurationError(
                    f"base_url must be an absolute http(s) URL such as 'https://app.example.com', not {base_url!r}."
                )
            self.http = HttpTarget(base_url.rstrip("/"), service_account_email or None, audience or None)
        self.routing: AppEngineRouting = default_routing(env, background_service)
        self.emulator_host = emulator_host or env.get(EMULATOR_HOST_VARIABLE) or None
        self.transport_kind = transport
        self.retry = retry
        self.concurrency = concurrency
        self.max_task_size = max_task_size or (HTTP_TASK_LIMIT if self.http else INLINE_TASK_LIMIT)
        self._given_client = client
        self._given_async_client = async_client
        self._credentials = credentials
        self._client_options = client_options
        self._clients: PerProcess[Any] = PerProcess(self._make_client, _close_client)
        self._async_clients: PerProcess[weakref.WeakKeyDictionary[Any, Any]] = PerProcess(
            weakref.WeakKeyDictionary, None if async_client is not None else _close_async_clients
        )
        self._lock = threading.Lock()
        _live_transports.add(self)  # a forked child gets a new _lock (see _after_fork_in_child)
        self._tasks_v2: Any = None
        self._queue_paths: dict[str, str] = {}
        self._batch_unimplemented = False
        self._closed = False
        if self.http and not self.http.service_account_email and not self.emulator_host:
            logger.warning(
                "HTTP-target tasks to %s will carry no OIDC token: set service_account_email "
                "(IM_TASK_SERVICE_ACCOUNT_EMAIL), or the endpoint cannot tell Cloud Tasks from anyone else.",
                self.http.base_url,
            )

    def __repr__(self) -> str:
        target = f"base_url={self.http.base_url!r}" if self.http else "App Engine targets"
        where = f", emulator {self.emulator_host}" if self.emulator_host else ""
        return f"CloudTasksTransport({self.project!r}, {self._location!r}, {target}{where})"

    # -- where tasks go ----------------------------------------------------

    @property
    def location(self) -> str:
        """The queues' location (asked of App Engine's metadata server once when not configured).

        Raises:
            EnqueueError: It is not configured and the metadata server did not tell it.
        """
        with self._lock:
            if self._location is None:
                self._location = _metadata_region()
            return self._location

    def queue_path(self, queue: str) -> str:
        """The full path of a queue: ``projects/P/locations/L/queues/Q``."""
        return f"projects/{self.project}/locations/{self.location}/queues/{queue}"

    # -- clients -----------------------------------------------------------

    def client(self) -> Any:
        """This process's ``CloudTasksClient``, made on first use (again in a forked child)."""
        return self._clients.get()

    def _make_client(self) -> Any:
        given = self._given_client
        if given is not None:
            return given() if callable(given) and not hasattr(given, "create_task") else given
        tasks_v2 = self._library()
        if self.emulator_host:
            if self.transport_kind == "rest":
                return tasks_v2.CloudTasksClient(
                    transport="rest",
                    credentials=_anonymous(),
                    client_options={"api_endpoint": f"http://{self.emulator_host}"},
                )
            import grpc
            from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

            channel = grpc.insecure_channel(self.emulator_host)
            return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        return tasks_v2.CloudTasksClient(
            transport=self.transport_kind, credentials=self._credentials, client_options=self._client_options
        )

    def _async_client(self) -> Any | None:
        """The async client of the running event loop, or None to run :meth:`enqueue` in a thread instead."""
        import asyncio

        given = self._given_async_client
        if given is None and (self._given_client is not None or self.transport_kind == "rest"):
            return None
        loop = asyncio.get_running_loop()
        clients = self._async_clients.get()
        with self._lock:
            found = clients.get(loop)
            if found is None:
                if given is not None:
                    found = given() if callable(given) and not hasattr(given, "create_task") else given
                else:
                    found = self._make_async_client()
                clients[loop] = found
            return found

    def _make_async_client(self) -> Any:
        tasks_v2 = self._library()
        if self.emulator_host:
            import grpc
            from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcAsyncIOTransport

            channel = grpc.aio.insecure_channel(self.emulator_host)
            return tasks_v2.CloudTasksAsyncClient(transport=CloudTasksGrpcAsyncIOTransport(channel=channel))
        return tasks_v2.CloudTasksAsyncClient(credentials=self._credentials, client_options=self._client_options)

    # -- the Transport contract -------------------------------------------

    def enqueue(self, request: TaskRequest) -> str | None:
        """Creates one task on Cloud Tasks, retrying transient failures safely.

        Args:
            request: The task.

        Returns:
            The task's short name: the given one, the one fixed for retries, or the one Cloud Tasks chose.

        Raises:
            TaskAlreadyExistsError: The name is taken (not after a retry of this very call: then it was created).
            TaskTooLargeError: The serialised task is over :attr:`max_task_size`.
            UnknownQueueError: The queue does not exist.
            PermissionDeniedError: The caller may not create tasks on the queue.
            TransientEnqueueError: Cloud Tasks could not be reached or did not answer, after the retries.
            EnqueueError: The transport is closed, the request is malformed, or Cloud Tasks refused it.
        """
        return self._create(self._prepare(request))

    def enqueue_many(self, requests: Sequence[TaskRequest]) -> list[str | Exception | None]:
        """Creates many tasks, with ``BatchCreateTasks`` (100 a call, one queue a call).

        A batch is not atomic: each item succeeds or fails on its own. When
        the server does not implement ``BatchCreateTasks`` (the emulator), the
        tasks are created one by one, at most :attr:`concurrency` at a time.

        Args:
            requests: The tasks.

        Returns:
            One entry per request, in order: the task's name, or the exception
            it failed with (the errors of :meth:`enqueue`).
        """
        results: list[str | Exception | None] = [None] * len(requests)
        by_queue: dict[str, list[tuple[int, _Prepared]]] = {}
        for index, request in enumerate(requests):
            try:
                prepared = self._prepare(request, always_named=True)
            except EnqueueError as exc:
                results[index] = exc
                continue
            by_queue.setdefault(prepared.parent, []).append((index, prepared))
        one_by_one: list[tuple[int, _Prepared]] = []
        for items in by_queue.values():
            for start in range(0, len(items), BATCH_LIMIT):
                chunk = items[start : start + BATCH_LIMIT]
                if self._batch_unimplemented:
                    one_by_one.extend(chunk)
                    continue
                try:
                    for (index, _), outcome in zip(chunk, self._batch([p for _, p in chunk]), strict=True):
                        results[index] = outcome
                except _BatchUnimplemented:
                    logger.info("Cloud Tasks does not implement BatchCreateTasks here; creating tasks one by one.")
                    self._batch_unimplemented = True
                    one_by_one.extend(chunk)
        if one_by_one:
            import concurrent.futures

            workers = min(self.concurrency, len(one_by_one))
            with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="im-task-cloudtasks") as pool:
                for (index, _), outcome in zip(
                    one_by_one, pool.map(self._create_or_error, [p for _, p in one_by_one]), strict=True
                ):
                    results[index] = outcome
        return results

    async def enqueue_async(self, request: TaskRequest) -> str | None:
        """Creates one task with the async client (gRPC), as :meth:`enqueue` does.

        With the REST transport or a given synchronous ``client`` (and no
        ``async_client``), :meth:`enqueue` runs in a worker thread instead.

        Args:
            request: The task.

        Returns:
            The task's short name.

        Raises:
            EnqueueError: As :meth:`enqueue`.
        """
        import asyncio

        prepared = self._prepare(request)
        try:
            client = self._async_client()
        except ConfigurationError:
            raise
        except Exception as exc:
            raise EnqueueError(f"Could not make a Cloud Tasks async client: {exc}") from exc
        if client is None:
            return await asyncio.to_thread(self._create, prepared)
        started = time.monotonic()
        for attempt in self._attempts(prepared):
            try:
                task = await client.create_task(request=prepared.create, timeout=self.retry.timeout, retry=None)
            except Exception as exc:
                outcome = self._after_failure(exc, prepared, attempt, started)
                if isinstance(outcome, float):
                    await asyncio.sleep(outcome)
                    continue
                return outcome
            return _short_name(prepared, task)
        raise AssertionError("unreachable")  # pragma: no cover - _after_failure ends the last attempt

    def close(self) -> None:
        """Refuses further tasks and closes this process's clients (given clients are left open). Never raises.

        An async client's channel is closed on its event loop when that loop is still running, else dropped.
        """
        self._closed = True
        try:
            self._async_clients.clear()
            if self._given_client is None:
                self._clients.clear()
        except Exception:  # pragma: no cover - the close functions already swallow their failures
            logger.debug("Closing the Cloud Tasks clients failed.", exc_info=True)

    # -- sending -----------------------------------------------------------

    def _prepare(self, request: TaskRequest, *, always_named: bool = False) -> _Prepared:
        check_open(self._closed, self)
        check_request(request, self)
        tasks_v2 = self._library()
        parent = self._queue_paths.get(request.queue) or self._remember_queue_path(request.queue)
        name = request.name
        if name is None and (always_named or self.retry.attempts > 1):
            name = os.urandom(16).hex()  # random, so as fast as a hashed name; fixed before the first try
        create = build_task(request, parent=parent, name=name, tasks_v2=tasks_v2, http=self.http, routing=self.routing)
        size = tasks_v2.CreateTaskRequest.pb(create).task.ByteSize()
        if size > self.max_task_size:
            kind = "HTTP" if self.http else "App Engine"
            raise TaskTooLargeError(
                f"The task {request.url} is {size} bytes serialised, over the limit of {self.max_task_size} bytes "
                f"of Cloud Tasks {kind} targets; send less data with the task (e.g. a key to load it with)."
            )
        return _Prepared(request.queue, parent, name, create)

    def _library(self) -> Any:
        """The ``google.cloud.tasks_v2`` module, imported and checked on first use (then kept)."""
        tasks_v2 = self._tasks_v2
        if tasks_v2 is None:
            tasks_v2 = self._tasks_v2 = require_library()
        return tasks_v2

    def _remember_queue_path(self, queue: str) -> str:
        """:meth:`queue_path`, kept for the next task of the queue (the location is fixed once known)."""
        path = self._queue_paths[queue] = self.queue_path(queue)
        return path

    def _attempts(self, prepared: _Prepared) -> Iterator[int]:
        attempts = self.retry.attempts if prepared.name is not None else 1
        return iter(range(1, attempts + 1))

    def _create(self, prepared: _Prepared) -> str | None:
        started = time.monotonic()
        for attempt in self._attempts(prepared):
            try:
                task = self.client().create_task(request=prepared.create, timeout=self.retry.timeout, retry=None)
            except Exception as exc:
                outcome = self._after_failure(exc, prepared, attempt, started)
                if isinstance(outcome, float):
                    time.sleep(outcome)
                    continue
                return outcome
            return _short_name(prepared, task)
        raise AssertionError("unreachable")  # pragma: no cover - _after_failure ends the last attempt

    def _create_or_error(self, prepared: _Prepared) -> str | Exception | None:
        try:
            return self._create(prepared)
        except EnqueueError as exc:
            return exc

    def _after_failure(self, exc: Exception, prepared: _Prepared, attempt: int, started: float) -> float | str | None:
        """What to do after a failed try: seconds to wait before the next, the task's name (it was created), or raise.

        Raises:
            EnqueueError: The library's error for the failure.
        """
        if isinstance(exc, EnqueueError):
            raise exc
        if isinstance(exc, ConfigurationError):
            raise EnqueueError(f"The Cloud Tasks client could not be made: {exc}") from exc
        if not _is_api_failure(exc):
            raise EnqueueError(f"Could not create a task on {prepared.parent}: {type(exc).__name__}: {exc}") from exc
        if attempt > 1 and is_already_exists(exc):
            logger.info(
                "Task %s exists after a retry of its creation: the earlier try created it.",
                prepared.name,
            )
            return prepared.name
        elapsed = time.monotonic() - started
        if is_transient(exc) and attempt < self.retry.attempts and prepared.name is not None:
            delay = self.retry.delay(attempt)
            if elapsed + delay < self.retry.deadline:
                logger.info(
                    "Creating task %s on %s failed (%s); retry %d in %.2f s.",
                    prepared.name,
                    prepared.parent,
                    type(exc).__name__,
                    attempt,
                    delay,
                )
                return delay
        raise library_error(
            exc, queue=prepared.queue, name=prepared.name, parent=prepared.parent, attempts=attempt
        ) from exc

    def _batch(self, chunk: list[_Prepared]) -> list[str | Exception | None]:
        """Creates up to 100 named tasks of one queue with ``BatchCreateTasks``; one outcome per task.

        Raises:
            _BatchUnimplemented: The server does not implement it.
        """
        from google.api_core import retry as api_retry
        from google.api_core.future import polling

        tasks_v2 = self._library()
        parent = chunk[0].parent
        batch = tasks_v2.BatchCreateTasksRequest(
            parent=parent, requests=[p.create for p in chunk], request_id=str(uuid.uuid4())
        )
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            operation = None
            try:
                operation = self.client().batch_create_tasks(request=batch, timeout=self.retry.timeout, retry=None)
                remaining = max(self.retry.deadline - (time.monotonic() - started), 1.0)
                waiting = api_retry.Retry(
                    predicate=polling.POLLING_PREDICATE, initial=0.1, maximum=2.0, multiplier=2.0, timeout=remaining
                )
                response = operation.result(timeout=remaining, polling=waiting)
                break
            except Exception as exc:
                if _is_api_failure(exc) and is_unimplemented(exc):
                    raise _BatchUnimplemented from exc
                elapsed = time.monotonic() - started
                if _is_api_failure(exc) and is_transient(exc) and attempt < self.retry.attempts and operation is None:
                    delay = self.retry.delay(attempt)
                    if elapsed + delay < self.retry.deadline:
                        time.sleep(delay)
                        continue
                return self._batch_failed(chunk, exc, operation, attempt)
        return self._batch_outcomes(chunk, operation.metadata, response, attempt)

    def _batch_failed(
        self, chunk: list[_Prepared], exc: Exception, operation: Any, attempt: int
    ) -> list[str | Exception | None]:
        """Outcomes when the batch call or its operation failed: items it reports, else everything failed."""
        metadata = operation.metadata if operation is not None else None
        failed = dict(metadata.failed_requests) if metadata is not None else {}
        import concurrent.futures

        error: EnqueueError
        if isinstance(exc, concurrent.futures.TimeoutError):
            error = TransientEnqueueError(
                f"BatchCreateTasks on {chunk[0].parent} did not finish in {self.retry.deadline} s; the tasks' names "
                f"are fixed, so sending them again is safe. ({type(exc).__name__}: {exc})"
            )
        elif isinstance(exc, EnqueueError):
            error = exc
        elif not _is_api_failure(exc):
            error = EnqueueError(f"Could not create tasks on {chunk[0].parent}: {type(exc).__name__}: {exc}")
        else:
            error = library_error(exc, queue=chunk[0].queue, name=None, parent=chunk[0].parent, attempts=attempt)
        outcomes: list[str | Exception | None] = []
        for index, prepared in enumerate(chunk):
            status = failed.get(index)
            outcomes.append(self._item_outcome(prepared, status, attempt) if status is not None else error)
        return outcomes

    def _batch_outcomes(
        self, chunk: list[_Prepared], metadata: Any, response: Any, attempt: int
    ) -> list[str | Exception | None]:
        failed = dict(metadata.failed_requests) if metadata is not None else {}
        outcomes: list[str | Exception | None] = []
        for index, prepared in enumerate(chunk):
            status = failed.get(index)
            outcomes.append(prepared.name if status is None else self._item_outcome(prepared, status, attempt))
        return outcomes

    def _item_outcome(self, prepared: _Prepared, status: Any, attempt: int) -> str | Exception | None:
        exc = api_error_from_status(int(status.code), str(status.message))
        if attempt > 1 and is_already_exists(exc):
            return prepared.name  # created by the try whose answer was lost
        return library_error(exc, queue=prepared.queue, name=prepared.name, parent=prepared.parent, attempts=1)


def _short_name(prepared: _Prepared, task: Any) -> str | None:
    """The short name of a created task: the one it was sent with, else the one Cloud Tasks gave it."""
    if prepared.name is not None:
        return prepared.name  # Cloud Tasks keeps the name it is sent
    name = str(getattr(task, "name", "") or "")
    return name.rsplit("/", 1)[-1] if name else None


def _is_api_failure(exc: BaseException) -> bool:
    from google.api_core import exceptions

    if isinstance(exc, exceptions.GoogleAPICallError):
        return True
    return is_transient(exc)


def _close_client(client: Any) -> None:
    try:
        client.transport.close()
    except Exception:  # pragma: no cover - closing is best effort
        logger.debug("Closing the Cloud Tasks client failed.", exc_info=True)


def _close_async_clients(clients: weakref.WeakKeyDictionary[Any, Any]) -> None:
    """Closes the channels of async clients (a coroutine) on their event loops still running; drops the others."""
    import asyncio
    import inspect

    for loop, client in list(clients.items()):
        try:
            if loop.is_closed() or not loop.is_running():
                continue  # nowhere to run the close: dropped
            closing = client.transport.close()
            if inspect.iscoroutine(closing):
                try:
                    asyncio.run_coroutine_threadsafe(closing, loop)
                except BaseException:
                    closing.close()  # not "never awaited"
                    raise
        except Exception:
            logger.debug("Closing an async Cloud Tasks client failed.", exc_info=True)
    clients.clear()


#: The transports of this process, whose lock a forked child replaces.
_live_transports: weakref.WeakSet[CloudTasksTransport] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for transport in list(_live_transports):
        transport._lock = threading.Lock()  # another thread of the parent may have held it at the fork


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python 3.7+
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _anonymous() -> Any:
    from google.auth import credentials

    return credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]


def _check_library_installed() -> None:
    try:
        version = importlib.metadata.version("google-cloud-tasks")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigurationError(
            f"The Cloud Tasks transport needs google-cloud-tasks 2.25 or later, which is not installed: {INSTALL_HINT}."
        ) from None
    parts = tuple(int(p) if p.isdigit() else 0 for p in version.split(".")[:2])
    if parts < (2, 25):
        raise ConfigurationError(
            f"The Cloud Tasks transport needs google-cloud-tasks 2.25 or later (for batch creation and per-task "
            f"retry_config), not {version}: {INSTALL_HINT}."
        )


def _gae_project(application: str | None) -> str | None:
    """The project of App Engine's ``GAE_APPLICATION`` (``"e~my-project"``), or None."""
    if not application:
        return None
    return application.split("~", 1)[-1] or None


def _metadata_region(timeout: float = 2.0) -> str:
    """The region of this App Engine instance, from the metadata server (``$GCE_METADATA_HOST`` if set).

    Raises:
        EnqueueError: The server did not answer with a region.
    """
    import urllib.request

    host = os.environ.get("GCE_METADATA_HOST") or "metadata.google.internal"
    url = METADATA_REGION.format(host=host)
    request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            text = bytes(answer.read(1024)).decode("ascii", "replace").strip()
    except OSError as exc:
        raise EnqueueError(
            f"No Cloud Tasks location is configured and the metadata server ({url}) did not tell the region: "
            f"set IM_TASK_LOCATION (or configure(location=...)). ({exc})"
        ) from exc
    region = text.rsplit("/", 1)[-1]
    if not region or not all(c.isalnum() or c == "-" for c in region):
        raise EnqueueError(
            f"The metadata server told the region {json.dumps(text)}, which is not a location: set IM_TASK_LOCATION."
        )
    return region
