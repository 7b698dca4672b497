"""How the core fits together: one state, the endpoint table, transports given what they call."""

from __future__ import annotations

import tempfile
from typing import Any

from im_task import configure, set_taskroute, task
from im_task.endpoints import TASK_ENDPOINT, endpoints, handle_request
from im_task.response import TaskResponse
from im_task.runtime import get_transport
from im_task.state import STATE
from im_task.transports import RecordingTransport

data_dir = tempfile.mkdtemp(prefix="im-task-architecture-")
configure(secret="an-example-secret-0123456789abcdef", data_dir=data_dir)

# -- one state ---------------------------------------------------------------------------
# [state]
saved = STATE.snapshot()  # settings, transport, route, binders, local target, warm-up: all of it
set_taskroute("/tasks")
configure(default_queue="elsewhere")
STATE.restore(saved)  # exactly as before
assert STATE.taskroute == "/_ah/task"
assert "default_queue" not in STATE.explicit
# [/state]

# -- the endpoint table --------------------------------------------------------------------
# [endpoints]
for endpoint in endpoints():  # what every adapter mounts, in one loop
    print(endpoint.name, endpoint.path(), "and every path under it" if endpoint.prefix else "")
assert TASK_ENDPOINT.matches("/_ah/task/app.tasks/send_mail")
assert TASK_ENDPOINT.path("/jobs") == "/jobs"  # an adapter that fixes its own task route
# [/endpoints]

# -- transports are given the handler they call ------------------------------------------------
# [handler]
results: list[int] = []


@task
def add(a: int, b: int) -> None:
    results.append(a + b)


def count_then_serve(method: str, path: str, *rest: Any) -> TaskResponse:
    """A handler of our own, in front of this process's endpoints."""
    served.append(path)
    return handle_request(method, path, *rest)


served: list[str] = []
given = RecordingTransport(count_then_serve)  # given its handler, as httpx's MockTransport
configure(transport=given)
add(2, 3)
assert [r.status for r in given.run_all()] == [200]
assert results == [5]
assert served == [add.url]

configure(transport=RecordingTransport())  # none given: it serves this process's endpoints
add(4, 5)
installed = get_transport()
assert isinstance(installed, RecordingTransport)
assert installed.handler is None
assert [r.status for r in installed.run_all()] == [200]
assert results == [5, 9]
# [/handler]
print("ok")
