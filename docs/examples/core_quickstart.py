"""Quickstart: a task enqueued on the embedded local queue and run by the task endpoint.

Run it from an empty directory: it keeps its queue and its development secret
in ``./.im_task/``. It exits with status 0 only if the task ran.
"""

from pathlib import Path

# [start quickstart]
from im_task import configure, task
from im_task.transports import LocalTransport
from im_task.wsgi import TaskWSGIApp

totals = []


@task
def add(a, b):
    totals.append(a + b)


app = TaskWSGIApp()  # the task endpoint, /_ah/task/...; a framework adapter mounts it for you
queue = LocalTransport(target=app)  # durable SQLite queue in ./.im_task/, delivering to `app` in process
configure(transport=queue)

handle = add(1, 2)  # serialised, signed and stored; not run yet
print(f"Enqueued task {handle.name} on queue {handle.queue!r}: POST {handle.url}")

queue.join(timeout=30)  # wait until nothing is due or running
print(f"The task ran: totals == {totals}")
queue.close()
# [end quickstart]

assert handle.queue == "default"
assert handle.url == "/_ah/task/__main__/add"
assert totals == [3], totals

# Nothing was configured but the transport: the queue and the development secret live in ./.im_task/
assert Path(".im_task/queue.sqlite3").is_file()
assert Path(".im_task/secret").is_file()
