"""Code written for FreshPlanet's deferred (``tasks.addTask``) or fh-django-gae-tasks, on im-task.

A ``RecordingTransport`` keeps the tasks instead of sending them; ``run_all()``
runs them through the real endpoint. The script exits with status 0 only if
every check holds.
"""

import json
from pathlib import Path

from im_task import configure, get_retry_count, is_from_task_queue, log_as_retried, set_taskroute, task
from im_task.transports import RecordingTransport

recorder = RecordingTransport()
configure(transport=recorder)


def record(*what):
    """Notes that a task ran, in a file: a task pickled by value gets copies of the globals it uses."""
    with open("done.txt", "a", encoding="utf-8") as f:
        f.write(json.dumps(what) + "\n")


# [start settings]
configure(
    warmup_module="decimal",  # was tasks.WARMUP_MODULE: your module that imports all task code, e.g. "myapp.warmup"
    background_service="background",  # was tasks.BACKGROUND_MODULE (Cloud Tasks routes there from "default")
)
set_taskroute("/_cb/deferred")  # keeps FreshPlanet's readable URLs: /_cb/deferred/<module>/<function>
# [end settings]


# [start tasks]
def charge(user_id):
    log_as_retried("charging %s", user_id)  # INFO on the first try, louder on each retry
    record("charge", user_id, is_from_task_queue(), get_retry_count())


# was: tasks.addTask(["charges-1", "charges-2"], charge, 7): spread over several queues
charge_later = task(charge, queue=["charges-1", "charges-2"])
charge_later(7)

# was: tasks.addTask("default", charge, 8, _name="charge-8"): a taken name was logged, not raised
charge_once = task(charge, name="charge-8", raise_if_exists=False)
charge_once(8)
charge_once(8)  # the name is taken: logged at info, not raised
# [end tasks]

spread, named = recorder.requests
assert spread.url.startswith("/_cb/deferred/"), spread.url
assert spread.url.endswith("/charge"), spread.url
assert spread.queue in ("charges-1", "charges-2")
assert (named.name, named.queue) == ("charge-8", "default")
assert [r.status for r in recorder.run_all()] == [200, 200]

done = [json.loads(line) for line in Path("done.txt").read_text(encoding="utf-8").splitlines()]
assert done == [["charge", 7, True, 0], ["charge", 8, True, 0]], done
print("ran:", done)
