"""The embedded local queue behaves like Cloud Tasks; and a transport of your own.

Tasks are delivered in process to the task endpoint (``TaskWSGIApp``). The
script checks durability across a restart, the task headers, named tasks, the
size limit, retries with backoff, and ``join()``. It exits with status 0 only
if every check holds.
"""

import logging
import time

from im_task import TaskAlreadyExistsError, TaskTooLargeError, configure, task
from im_task.retry import RetryPolicy
from im_task.runtime import get_transport
from im_task.transports import LocalTransport, Transport
from im_task.wsgi import TaskWSGIApp

app = TaskWSGIApp()
seen = []


@task(includeheaders=True)
def remember(label, headers):
    seen.append((label, headers["X-AppEngine-QueueName"], headers["X-AppEngine-TaskRetryCount"]))


@task(queue="flaky")
def always_fails():
    raise RuntimeError("the service is down")


@task(countdown=2)
def later():
    seen.append(("later",))


# [start durability]
queue = LocalTransport("tasks.sqlite3", target=app, autostart=False)  # stores tasks, delivers none
configure(transport=queue)
remember("survives a restart")
queue.close()  # as if the process ended: the task is in the file

queue = LocalTransport("tasks.sqlite3", target=app)  # the next process opens the file and resumes the task
configure(transport=queue)
queue.join(timeout=30)
# [end durability]
assert seen == [("survives a restart", "default", "0")], seen

# [start named]
remember.using(name="welcome-mail-42")("named")
try:
    remember.using(name="welcome-mail-42")("named again")
except TaskAlreadyExistsError as exc:
    print(f"Refused: {exc}")  # while the task waits, and for an hour after it ran
else:
    raise AssertionError("a reused name must be refused")
queue.join(timeout=30)
assert [t.name for t in queue.tasks(state="done") if t.name == "welcome-mail-42"] == ["welcome-mail-42"]
# [end named]

# [start size]
configure(payload_store="none")  # by default a task over the limit goes to the payload store (see payloads)
try:
    remember("x" * 200_000)
except TaskTooLargeError as exc:
    print(f"Refused: {exc}")  # over 100 KB inline, as on Cloud Tasks
else:
    raise AssertionError("an oversized task must be refused")
# [end size]
queue.close()

# [start retries]
queue = LocalTransport(
    "tasks.sqlite3",
    target=app,
    queues={"flaky": RetryPolicy(max_attempts=3, min_backoff=0.05, max_backoff=0.2)},
)
configure(transport=queue)
logging.getLogger("im_task").setLevel(logging.CRITICAL)  # the endpoint would log each failure with its traceback
always_fails()
queue.join(timeout=30, scheduled=True)  # scheduled=True: also wait through the retry backoff
[failed] = queue.tasks(state="gave-up")  # the queue's retry policy gave up on it
print(f"{failed.name}: {failed.attempts} attempts, last answer {failed.last_status}: {failed.last_error}")
assert (failed.attempts, failed.last_status) == (3, 500)
assert queue.stats().given_up == 1
# [end retries]

# [start join]
later()
assert queue.join(timeout=30)  # returns at once: the task is not due yet
assert ("later",) not in seen
assert queue.join(timeout=30, scheduled=True)  # waits for the countdown and the delivery
assert ("later",) in seen
# [end join]
queue.close()


# [start custom]
class TimingTransport(Transport):
    """Wraps another transport and logs how long each enqueue took."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.max_task_size = inner.max_task_size

    def enqueue(self, request):
        start = time.perf_counter()
        name = self.inner.enqueue(request)  # raises the library's errors, as the contract says
        logging.getLogger("timing").info("enqueued %s in %.1f ms", name, (time.perf_counter() - start) * 1000)
        return name

    def close(self):
        self.inner.close()


# Any transport but the local queue and the in-process ones needs a configured secret (see security):
configure(
    transport=TimingTransport(LocalTransport("tasks.sqlite3", target=app)),
    secret="5b0e7c1d9a3f48e2b6c0d4a8f1e3b7c9-the-same-in-every-process",
)
# [end custom]
remember("through a custom transport")
assert get_transport().inner.join(timeout=30)
assert seen[-1] == ("through a custom transport", "default", "0"), seen
get_transport().close()
print("Every check holds.")
