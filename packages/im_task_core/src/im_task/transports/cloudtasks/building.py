"""Turning a :class:`~im_task.transports.TaskRequest` into a Cloud Tasks ``CreateTaskRequest``.

Pure functions of their arguments (the environment is passed in), so each
mapping is tested on its own: App Engine routing and the legacy ``target``
forms, HTTP targets with OIDC tokens, schedule time, dispatch deadline,
headers, task names and ``retry_config``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from im_task.errors import EnqueueError
from im_task.headers import forwardable_headers
from im_task.retry import RetryOptions
from im_task.transports.base import TaskRequest

__all__ = [
    "AppEngineRouting",
    "HttpTarget",
    "ProtobufClasses",
    "app_engine_target",
    "build_task",
    "default_routing",
    "parse_target",
    "protobuf_classes",
    "retry_config",
]

_ROUTING_KEYS = ("service", "version", "instance")


@dataclass(frozen=True)
class AppEngineRouting:
    """Where an App Engine-target task runs; an empty field means App Engine's default.

    Attributes:
        service: The service (formerly module), or None for the default service.
        version: The version, or None for the version serving the service's traffic.
        instance: The instance, or None for any.
    """

    service: str | None = None
    version: str | None = None
    instance: str | None = None


@dataclass(frozen=True)
class HttpTarget:
    """Where HTTP-target tasks go and the OIDC token they carry.

    Attributes:
        base_url: The application's absolute URL, without a trailing slash; the task's path is appended.
        service_account_email: The service account of the tasks' OIDC tokens, or None for no token.
        audience: The tokens' audience (the endpoint checks it), or None for ``base_url``.
    """

    base_url: str
    service_account_email: str | None = None
    audience: str | None = None


def app_engine_target(service: str | None = None, version: str | None = None, instance: str | None = None) -> str:
    """A ``target`` option naming an App Engine service, version and instance explicitly.

    Args:
        service: The service, or None for the default service.
        version: The version, or None for the one serving the service's traffic.
        instance: The instance, or None for any.

    Returns:
        A string such as ``"service=worker,version=v2"``, for ``@task(target=...)``.

    Raises:
        EnqueueError: No part is given, or a part is empty or holds ``,``, ``=`` or ``.``.

    Example:
        >>> app_engine_target(service="worker", version="v2")
        'service=worker,version=v2'
    """
    parts = {"service": service, "version": version, "instance": instance}
    for key, value in parts.items():
        if value is not None and (not value or any(c in value for c in ",=.") or value != value.strip()):
            raise EnqueueError(f"App Engine {key} {value!r} is not a valid name.")
    given = [f"{key}={value}" for key, value in parts.items() if value is not None]
    if not given:
        raise EnqueueError("app_engine_target() needs a service, a version or an instance.")
    return ",".join(given)


def parse_target(target: str) -> AppEngineRouting:
    """Reads a ``target`` option: the legacy App Engine forms, or :func:`app_engine_target`'s.

    * ``"service"``: that service, its serving version;
    * ``"version.service"``: that version of that service;
    * ``"instance.version.service"``: that instance too;
    * ``"service=worker,version=v2,instance=1"``: the parts named (any of them).

    Args:
        target: The option's value.

    Returns:
        The routing.

    Raises:
        EnqueueError: The value has none of these forms.
    """
    text = target.strip()
    if "=" in text:
        found: dict[str, str] = {}
        for item in text.split(","):
            key, sep, value = (part.strip() for part in item.partition("="))
            if not sep or key not in _ROUTING_KEYS or not value or key in found:
                raise EnqueueError(
                    f"Bad target {target!r}: use 'service', 'version.service', 'instance.version.service' or "
                    "'service=S,version=V,instance=I' (see app_engine_target())."
                )
            found[key] = value
        return AppEngineRouting(**found)
    parts = text.split(".")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise EnqueueError(f"Bad target {target!r}: use 'service', 'version.service' or 'instance.version.service'.")
    parts.reverse()
    return AppEngineRouting(*parts)


def default_routing(environ: Mapping[str, str], background_service: str | None = None) -> AppEngineRouting:
    """The routing of tasks that name no target: the enqueuing service and version, so a task runs on its code.

    Off App Engine (no ``GAE_SERVICE``) nothing is set: App Engine's default
    service and version. With ``background_service``, tasks enqueued from the
    default service go to that service, same version (FreshPlanet's
    background module).

    Args:
        environ: The environment (``GAE_SERVICE``, ``GAE_VERSION``).
        background_service: The service for tasks enqueued from the default service, or None.

    Returns:
        The routing.
    """
    service = environ.get("GAE_SERVICE") or None
    version = environ.get("GAE_VERSION") or None
    if background_service and service in (None, "default"):
        return AppEngineRouting(service=background_service, version=version)
    return AppEngineRouting(service=service, version=version)


def retry_config(options: RetryOptions | None, tasks_v2: Any) -> Any:
    """A task's ``retry_options`` as a Cloud Tasks ``RetryConfig``, or None when there are none.

    ``task_retry_limit`` retries are ``task_retry_limit + 1`` attempts;
    ``task_age_limit`` is ``max_retry_duration``; the backoffs and doublings
    keep their meaning. Unset fields stay unset (the queue's apply).
    """
    if options is None:
        return None
    fields: dict[str, Any] = {}
    if options.task_retry_limit is not None:
        fields["max_attempts"] = options.task_retry_limit + 1
    if options.task_age_limit is not None:
        fields["max_retry_duration"] = dt.timedelta(seconds=options.task_age_limit)
    if options.min_backoff_seconds is not None:
        fields["min_backoff"] = dt.timedelta(seconds=options.min_backoff_seconds)
    if options.max_backoff_seconds is not None:
        fields["max_backoff"] = dt.timedelta(seconds=options.max_backoff_seconds)
    if options.max_doublings is not None:
        fields["max_doublings"] = options.max_doublings
    return tasks_v2.RetryConfig(**fields) if fields else None


@dataclass(frozen=True)
class ProtobufClasses:
    """The protobuf message classes under google-cloud-tasks' proto-plus ones, looked up once per module.

    A task is built from these directly: proto-plus wrappers convert every
    field on the way in, which costs more than the rest of an enqueue
    together. Made by :func:`protobuf_classes`.

    Attributes:
        create_task_request: ``CreateTaskRequest``'s protobuf class.
        wrap: Wraps a ``CreateTaskRequest`` protobuf message in its proto-plus class, without a copy.
        post: The value of ``HttpMethod.POST``.
    """

    create_task_request: Any
    wrap: Callable[[Any], Any]
    post: int


@functools.cache
def protobuf_classes(tasks_v2: Any) -> ProtobufClasses:
    """The protobuf classes of a ``google.cloud.tasks_v2`` module (cached: one lookup per module).

    Args:
        tasks_v2: The ``google.cloud.tasks_v2`` module.

    Returns:
        Its classes.
    """
    return ProtobufClasses(
        create_task_request=tasks_v2.CreateTaskRequest.pb(),
        wrap=tasks_v2.CreateTaskRequest.wrap,
        post=int(tasks_v2.HttpMethod.POST),
    )


def build_task(
    request: TaskRequest,
    *,
    parent: str,
    name: str | None,
    tasks_v2: Any,
    http: HttpTarget | None = None,
    routing: AppEngineRouting | None = None,
) -> Any:
    """The ``CreateTaskRequest`` of a task.

    The message is built as a plain protobuf message and wrapped, not copied,
    in the proto-plus class the client takes, so the client sends it as is.

    Args:
        request: The task.
        parent: The queue's full path, ``projects/P/locations/L/queues/Q``.
        name: The task's short name (given, or fixed before the first try), or None to let the queue name it.
        tasks_v2: The ``google.cloud.tasks_v2`` module.
        http: For HTTP targets, where they go and their OIDC token; None for App Engine targets.
        routing: For App Engine targets, the routing of tasks that name no ``target``.

    Returns:
        A ``google.cloud.tasks_v2.CreateTaskRequest``.
    """
    classes = protobuf_classes(tasks_v2)
    create = classes.create_task_request(parent=parent)
    task = create.task
    if http is not None:
        target = task.http_request
        target.url = http.base_url + request.url
        if http.service_account_email:
            target.oidc_token.service_account_email = http.service_account_email
            target.oidc_token.audience = http.audience or http.base_url
    else:
        target = task.app_engine_http_request
        target.relative_uri = request.url
        chosen = parse_target(request.target) if request.target else routing
        if chosen is not None:
            for key in _ROUTING_KEYS:
                value = getattr(chosen, key)
                if value:
                    setattr(target.app_engine_routing, key, value)
    target.http_method = classes.post
    target.headers.update(forwardable_headers(request.headers))
    target.body = request.body
    if name is not None:
        task.name = f"{parent}/tasks/{name}"
    if request.schedule_time is not None:
        when = request.schedule_time
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        # As proto-plus converts a datetime: whole seconds since the epoch, and the microseconds.
        task.schedule_time.seconds = int(when.timestamp())
        task.schedule_time.nanos = when.microsecond * 1000
    if request.dispatch_deadline is not None:
        deadline = request.dispatch_deadline
        task.dispatch_deadline.seconds = deadline.days * 86400 + deadline.seconds
        task.dispatch_deadline.nanos = deadline.microseconds * 1000
    config = retry_config(request.retry_options, tasks_v2)
    if config is not None:
        task.retry_config.CopyFrom(tasks_v2.RetryConfig.pb(config))
    return classes.wrap(create)
