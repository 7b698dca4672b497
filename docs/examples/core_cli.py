"""The ``im-task`` command: a separate worker process delivers the local queue to a running app.

The app (the task endpoint) is served over real HTTP on 127.0.0.1 by this
script; tasks are stored in ``./.im_task/queue.sqlite3`` without being
delivered, then ``im-task worker`` runs as its own process and delivers them.
``im-task queue list|stats|purge`` inspect and empty the queue. The script
exits with status 0 only if every command did what is documented.
"""

import subprocess
import sys

from im_task import configure, task
from im_task.testing import serve_wsgi
from im_task.transports import LocalTransport
from im_task.wsgi import TaskWSGIApp

delivered = []


@task(queue="mail")
def send_mail(to):
    delivered.append(to)


@task(queue="reports", countdown=3600)
def monthly_report():
    pass


def im_task_command(*args):
    """Runs ``im-task ARGS...`` (as ``python -m im_task.cli`` so the example needs no PATH) and returns its output."""
    result = subprocess.run(
        [sys.executable, "-m", "im_task.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )
    print(f"$ im-task {' '.join(args)}\n{result.stdout}{result.stderr}")
    return result


queue = LocalTransport(autostart=False)  # ./.im_task/queue.sqlite3: store only; the worker delivers
configure(transport=queue)
for address in ("ada@example.com", "grace@example.com", "alan@example.com"):
    send_mail(address)
monthly_report()  # due in an hour

with serve_wsgi(TaskWSGIApp()) as base_url:
    # [start worker]
    worker = im_task_command("worker", "--target", base_url, "--until-empty")
    # [end worker]
    assert worker.returncode == 0
    assert "3 done" in worker.stdout + worker.stderr
assert sorted(delivered) == ["ada@example.com", "alan@example.com", "grace@example.com"]

listing = im_task_command("queue", "list")
assert listing.returncode == 0
assert listing.stdout.splitlines()[0].split() == ["QUEUE", "NAME", "STATE", "ATTEMPTS", "DUE", "URL", "LAST"]
states = [row.split()[2] for row in listing.stdout.splitlines()[1:]]
assert sorted(states) == ["done", "done", "done", "queued"], states
assert "in 59m" in listing.stdout or "in 1h00m" in listing.stdout  # the monthly report, an hour from now

stats = im_task_command("queue", "stats")
assert "queued 1 (due now 0), running 0, done 3, failed 0" in stats.stdout

refused = im_task_command("queue", "purge", "--queue", "reports")
assert refused.returncode == 2  # nothing is deleted without --yes
purged = im_task_command("queue", "purge", "--queue", "reports", "--yes")
assert purged.returncode == 0
assert "Deleted 1 task(s)." in purged.stdout
queue.close()
