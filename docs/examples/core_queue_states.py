"""What became of a task on the local queue: its state, ``im-task queue show``, ``retry``, and queue limits.

The app (the task endpoint) is called in process; the tasks live in
``./.im_task/queue.sqlite3``. One task fails permanently until a file exists,
one is refused by a down target until the queue gives up: the queue keeps
them as ``failed`` and ``gave-up``, ``im-task queue show`` prints the call and
the last error, and ``im-task queue retry`` runs them again once the cause is
fixed. The script exits with status 0 only if everything did what is documented.
"""

import contextlib
import io
import logging
import subprocess
import sys
import time
from pathlib import Path

from im_task import PermanentTaskFailure, configure, task
from im_task.cli import main
from im_task.retry import RetryPolicy
from im_task.transports import LocalTransport
from im_task.transports.local.models import QueueLimits
from im_task.wsgi import TaskWSGIApp

logging.getLogger("im_task").propagate = False  # the failures below are on purpose: print nothing of them
sent = []


@task(queue="mail")
def send_invoice(customer, amount):
    if not Path("smtp.ok").exists():
        raise PermanentTaskFailure(f"no mail server configured for {customer}")
    sent.append((customer, amount))


def im_task_command(*args):
    """Runs ``im-task ARGS...`` (as ``python -m im_task.cli``) and returns its output."""
    result = subprocess.run(
        [sys.executable, "-m", "im_task.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )
    print(f"$ im-task {' '.join(args)}\n{result.stdout}{result.stderr}")
    return result


# [start states]
queue = LocalTransport(target=TaskWSGIApp())
configure(transport=queue)
handle = send_invoice("ada@example.com", 42)
queue.join(timeout=30)
[invoice] = queue.tasks(state="failed")  # failed permanently: not retried
assert (invoice.name, invoice.outcome, invoice.attempts) == (handle.name, "failed", 1)
stats = queue.stats()
assert (stats.done, stats.failed, stats.gave_up, stats.dropped) == (0, 1, 0, 0)
# [end states]

# [start show]
# `im-task queue show NAME` in a shell; here in this process, where the task's module (this script) imports.
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert main(["queue", "show", handle.name]) == 0
shown = out.getvalue()
print(shown)
assert "state:       failed" in shown
assert "send_invoice" in shown  # the function...
assert "('ada@example.com', 42)" in shown  # ...its arguments...
assert "Traceback (most recent call last)" in shown  # ...and the last error, with its traceback
assert "PermanentTaskFailure: no mail server configured for ada@example.com" in shown
# [end show]

# [start retry]
Path("smtp.ok").touch()  # fix the cause, then run it again
retried = im_task_command("queue", "retry", handle.name)
assert retried.stdout.strip() == "Queued 1 task(s) again."
deadline = time.monotonic() + 30  # the queue's dispatcher sees the change the command made within a second
while not sent and time.monotonic() < deadline:
    time.sleep(0.05)
assert sent == [("ada@example.com", 42)]
# [end retry]
queue.close()

# [start limits]
queue = LocalTransport(
    "limited.sqlite3",
    target="http://127.0.0.1:9",  # nothing listens there: every attempt fails to connect
    queues={"mail": RetryPolicy(max_attempts=2, min_backoff=0.1)},
    queue_limits={"mail": QueueLimits(max_dispatches_per_second=5, max_concurrent_dispatches=2)},
)
configure(transport=queue)
for customer in range(20):
    send_invoice(f"customer-{customer}@example.com", 10)
time.sleep(1)
attempts = sum(t.attempts for t in queue.tasks(limit=100))
assert attempts <= 12, attempts  # about 5 a second, not 20 at once: the target's outage burns few attempts
queue.close()
# [end limits]
