"""The task endpoint, framework-neutral: verify, decode, run, answer.

Adapters pass ``(method, path, body, headers, remote address)`` to
:func:`handle_request` and turn the :class:`TaskResponse` into their
framework's response. Every status the endpoint answers is decided here:

=================================================  ======
situation                                          status
=================================================  ======
task ran                                           200
``PermanentTaskFailure`` raised                    200
``SingularTaskFailure`` raised                     408
any other exception                                500
``task_retry_limit`` passed                        200
no task headers, or bad or missing signature       403
caller refused (see :mod:`im_task.caller`)         403
settings broken (no secret in production...)       500
signature verified but the call cannot be decoded  200
body over ``max_body_size``                        413
method other than POST                             405
=================================================  ======
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Mapping
from typing import IO, Any

from im_task.caller import CallerError, check_caller
from im_task.config import get_keyring, get_settings
from im_task.context import task_context
from im_task.envelope import open_envelope
from im_task.errors import ConfigurationError, PermanentTaskFailure, SignatureError, SingularTaskFailure
from im_task.headers import Headers, TaskHeaders
from im_task.response import TaskResponse, answer
from im_task.serialization import TaskWrapper, loads_call
from im_task.state import STATE

__all__ = ["TaskResponse", "handle_request"]

logger = logging.getLogger("im_task")
_warmup_lock = threading.Lock()


def handle_request(
    method: str,
    path: str,
    body: bytes | IO[bytes],
    headers: Mapping[str, str],
    remote_addr: str | None = None,
) -> TaskResponse:
    """Handles one request to the task endpoint.

    Args:
        method: The HTTP method.
        path: The request path (for logs; any path under the route is accepted).
        body: The body, as bytes or as a stream to read (at most
            ``max_body_size + 1`` bytes are read from it).
        headers: The request headers, in any case.
        remote_addr: The caller's address, if known.

    Returns:
        The response to send.
    """
    if method.upper() != "POST":
        return answer(405, "Method Not Allowed: tasks are POSTed.", Allow="POST")
    view = headers if isinstance(headers, Headers) else Headers(headers)
    task = TaskHeaders.parse(view)
    if task is None:
        logger.warning("Refused %s from %s: no task queue headers.", path, remote_addr or "unknown address")
        return answer(403, "Forbidden: not a task queue request.")
    try:
        settings, keyring = get_settings(), get_keyring()
        check_caller(task.family, view, settings)  # before the body is read: a refused caller sends nothing we read
    except CallerError as exc:
        logger.warning("Refused task %s (%s) from %s: %s", task.task_name, path, remote_addr or "unknown address", exc)
        return answer(403, "Forbidden: the caller is not the task queue.", exc)
    except ConfigurationError as exc:
        logger.error("Task %s (%s) not run; the queue will retry it. Misconfigured: %s", task.task_name, path, exc)
        return answer(500, "im-task is misconfigured; see the server log.", exc)
    data = _read_body(body, view, settings.max_body_size)
    if data is None:
        logger.error("Refused task %s (%s): body over the configured max_body_size.", task.task_name, path)
        return answer(413, "Content Too Large.")
    try:
        payload = open_envelope(data, keyring)
    except SignatureError as exc:
        logger.warning("Refused task %s (%s) from %s: %s", task.task_name, path, remote_addr or "unknown address", exc)
        return answer(403, "Forbidden: the task signature does not verify.", exc)
    return _run(task, view, path, payload)


def _read_body(body: bytes | IO[bytes], headers: Headers, cap: int) -> bytes | None:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body) if len(body) <= cap else None
    declared = headers.get("Content-Length")
    try:
        length = int(declared) if declared else None
    except ValueError:
        length = None
    if length is not None and length < 0:  # read(-1) would read everything
        length = None
    if length is not None and length > cap:
        return None
    data = body.read(cap + 1 if length is None else length)
    return data if len(data) <= cap else None


def _run(task: TaskHeaders, headers: Headers, path: str, payload: bytes) -> TaskResponse:
    warmup = get_settings().warmup_module
    if warmup and warmup not in STATE.warmed_up:
        try:
            _warm_up(warmup)
        except Exception as exc:
            logger.exception("Could not import the warm-up module %r; task %s will be retried.", warmup, path)
            return answer(500, "The warm-up module failed to import.", exc)
    try:
        call = loads_call(payload)
    except Exception as exc:
        logger.error(
            "Dropped task %s (%s): its call cannot be decoded, %s It will not be retried.",
            task.task_name,
            path,
            _why_undecodable(exc),
            exc_info=True,
        )
        return answer(200, "Dropped: the task cannot be decoded.", exc)
    description = call.description or path
    if call.retry_limit is not None and task.retry_count > call.retry_limit:
        logger.error(
            "Gave up task %s (%s) on queue %s after %d retries (task_retry_limit=%d).",
            task.task_name,
            description,
            task.queue_name,
            task.retry_count,
            call.retry_limit,
        )
        return answer(200, "Gave up: retry limit reached.")
    if logger.isEnabledFor(logging.DEBUG):  # the queue's headers only: others may carry tokens or cookies
        queue_headers = {k: v for k, v in headers.items() if k.lower().startswith(("x-appengine-", "x-cloudtasks-"))}
        logger.debug("Running task %s (%s) with headers %s", task.task_name, description, queue_headers)
    kwargs: dict[str, Any] = dict(call.kwargs)
    if call.includeheaders:
        kwargs["headers"] = headers
    func = _unwrap(call.func)
    try:
        with task_context(task, headers):
            func(*call.args, **kwargs)
    except PermanentTaskFailure as exc:
        logger.exception("Task %s (%s) failed permanently; it will not be retried.", task.task_name, description)
        return answer(200, "Failed permanently; not retried.", exc)
    except SingularTaskFailure as exc:
        logger.debug("Task %s (%s) failed once and will be retried: %s", task.task_name, description, exc)
        return answer(408, "Failed this attempt; will be retried.", exc)
    except Exception as exc:
        logger.exception(
            "Task %s (%s) failed on retry %d; it will be retried.", task.task_name, description, task.retry_count
        )
        return answer(500, "The task failed; it will be retried.", exc)
    logger.debug("Task %s (%s) succeeded.", task.task_name, description)
    return answer(200, "OK")


def _why_undecodable(exc: Exception) -> str:
    if "__main__" in str(exc):
        return (
            "because it names a function of another program's __main__: tasks defined in a script run only in "
            "that same process; define them in an importable module."
        )
    return "probably because the code changed since it was enqueued."


def _unwrap(func: Any) -> Any:
    """The callable to run: a ``TaskFunction``'s own, since calling the ``TaskFunction`` would enqueue again."""
    return func.func if isinstance(func, TaskWrapper) else func


def _warm_up(module: str) -> None:
    with _warmup_lock:
        if module in STATE.warmed_up:
            return
        importlib.import_module(module)
        with STATE.lock:
            STATE.warmed_up.add(module)
        logger.info("Imported warm-up module %s before the first task.", module)
