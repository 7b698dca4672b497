"""Cloud Tasks transports pointed at the tests' fake server: one project, one location, fast retries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from im_task.transports import CloudTasksTransport
from im_task.transports.cloudtasks import EnqueueRetry

if TYPE_CHECKING:
    from im_task_testsupport.cloudtasks_server import FakeCloudTasks

__all__ = ["FAST", "LOCATION", "PROJECT", "transport_for"]

#: The project and location of every queue of the tests.
PROJECT, LOCATION = "proj", "europe-west1"
#: Retries with tiny delays, so that tests of retrying are fast.
FAST = EnqueueRetry(attempts=4, initial_backoff=0.01, max_backoff=0.02, deadline=10.0, timeout=5.0)


def transport_for(server: FakeCloudTasks, **kwargs: Any) -> CloudTasksTransport:
    """A transport sending to ``server``, with :data:`FAST` retries and no environment; the caller closes it.

    Args:
        server: The fake Cloud Tasks server (its ``address`` becomes ``emulator_host``).
        **kwargs: Further :class:`~im_task.transports.CloudTasksTransport` arguments; they override
            ``emulator_host``, ``retry`` and ``environ``.

    Returns:
        The transport, for :data:`PROJECT` and :data:`LOCATION`.
    """
    kwargs.setdefault("emulator_host", server.address)
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("environ", {})
    return CloudTasksTransport(PROJECT, LOCATION, **kwargs)
