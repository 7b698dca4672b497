"""Transports that deliver in this process, by calling the endpoint handler they are given."""

from __future__ import annotations

from dataclasses import replace

from im_task.deliveryproof import Attempt, KeyringSource, check_keyring_source, proof_headers, signing_keyring
from im_task.errors import ConfigurationError
from im_task.headers import APPENGINE, delivery_headers, make_task_headers
from im_task.response import Handler, TaskResponse
from im_task.state import STATE
from im_task.transports.base import INLINE_TASK_LIMIT, TaskNames, TaskRequest, Transport

__all__ = ["InProcessTransport"]


class InProcessTransport(Transport):
    """Base of the transports that POST tasks to a handler in this process, as a queue would.

    Like httpx's ``MockTransport``, it can be given the handler it calls:
    ``handler(method, path, body, headers, remote_addr)`` returning a
    :class:`~im_task.response.TaskResponse`. Without one, it delivers to this
    process's endpoints (:func:`im_task.endpoints.handle_request`, which
    registers itself in the process state when loaded: ``@task`` loads it).
    It never imports the endpoint itself. Reused task names are refused, as by a queue.
    Each delivery carries the signed proof of im-task's own queues
    (:mod:`im_task.deliveryproof`), so the endpoint trusts its retry count.

    Args:
        handler: The handler to call, or None for this process's endpoints.
        max_task_size: Largest task accepted, in bytes.
        keyring: The keys the proofs are signed with, or a function that returns them; by default the
            keyring in force, looked up at each delivery.
    """

    shares_data_directory = True  # tasks are delivered in this very process

    def __init__(
        self, handler: Handler | None = None, *, max_task_size: int = INLINE_TASK_LIMIT, keyring: KeyringSource = None
    ) -> None:
        check_keyring_source(keyring)
        if handler is not None and not callable(handler):
            raise ConfigurationError(f"handler must be callable, not {type(handler).__name__}.")
        if isinstance(max_task_size, bool) or not isinstance(max_task_size, int) or max_task_size < 1:
            raise ConfigurationError(f"max_task_size must be a whole number of bytes > 0, not {max_task_size!r}.")
        self.handler = handler
        self.keyring = keyring
        self.max_task_size = max_task_size
        self.names = TaskNames()
        self.closed = False

    def deliver(self, request: TaskRequest, *, retry_count: int = 0, family: str = APPENGINE) -> TaskResponse:
        """POSTs a task to the handler with the headers a queue sends.

        Headers the queue sets (``X-AppEngine-*`` and the like) are dropped
        from the request's own, as a queue would.

        Args:
            request: The task.
            retry_count: Attempts made before this one.
            family: Header family to send.

        Returns:
            The handler's response.

        Raises:
            ConfigurationError: The transport has no handler and this process's endpoints are not loaded.
        """
        handler = self.handler or STATE.endpoint_handler
        if handler is None:
            raise ConfigurationError(
                f"{type(self).__name__} has no handler to deliver to: pass handler=im_task.endpoints.handle_request "
                "(or import im_task.endpoints, whose endpoints serve in-process transports made without one)."
            )
        named = request if request.name else replace(request, name="unnamed")
        headers = delivery_headers(
            named.headers,
            make_task_headers(
                queue_name=named.queue,
                task_name=str(named.name),
                retry_count=retry_count,
                execution_count=retry_count,
                eta=named.schedule_time,
                family=family,
            ),
        )
        keyring = signing_keyring(self.keyring)
        if keyring is not None:
            attempt = Attempt(named.queue, str(named.name), retry_count, retry_count)
            headers.update(proof_headers(attempt, named.body, keyring))
        return handler("POST", named.url, named.body, headers, "127.0.0.1")

    def close(self) -> None:
        """Refuses further tasks."""
        self.closed = True
