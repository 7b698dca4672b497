"""Code written for im_task (Python 2) runs as it is; old ``deferred`` habits fail at the call, saying what to use.

A ``RecordingTransport`` keeps the tasks instead of sending them; ``run_all()``
runs them through the real endpoint. The script exits with status 0 only if
every check holds.
"""

import json
from pathlib import Path

from im_task import (
    EnqueueError,
    PermanentTaskFailure,
    RetryTaskException,
    configure,
    set_taskroute,
    task,
)
from im_task.transports import RecordingTransport

recorder = RecordingTransport()
configure(transport=recorder)


def record(*what):
    """Notes that a task ran, in a file: a task pickled by value gets copies of the globals it uses."""
    with open("done.txt", "a", encoding="utf-8") as f:
        f.write(json.dumps(what) + "\n")


# [start old-code]
set_taskroute("/_ah/task")  # as before: early, before anything is decorated


@task(queue="default", countdown=5)
def anotherfunction():
    record("anotherfunction")


@task(includeheaders=True)
def myfunctionwithheaders(amount, headers):
    record("headers", amount, headers["X-AppEngine-TaskRetryCount"])


def somefunction(a, b):
    record("somefunction", a + b)


@task(logname="reports/daily")  # a readable URL: /_ah/task/reports/daily
def daily_report():
    raise PermanentTaskFailure("nothing to report")  # 200: not retried


def myouterfunction(mapf):  # tasks may be nested functions and take functions as arguments
    @task
    def myinnerfunction(objects):
        for obj in objects:
            mapf(obj)

    for objects in [[1, 2], [3]]:
        myinnerfunction(objects)


anotherfunction()
myfunctionwithheaders(10)
task(somefunction, queue="myqueue")(1, 2)  # the factory form
daily_report()
myouterfunction(lambda obj: record("object", obj))
# [end old-code]

assert RetryTaskException.__module__ == "im_task.errors"
urls = [r.url for r in recorder.requests]
assert urls[3] == "/_ah/task/reports/daily", urls
assert [r.status for r in recorder.run_all()] == [200] * 6

# [start habits]
later = task(somefunction)
try:
    later(1, 2, _countdown=60)  # App Engine deferred's way to pass an option
except EnqueueError as error:
    message = str(error)
    print(message)  # ... _countdown is how App Engine's deferred.defer() takes task options; ... .using(countdown=60)
later.using(countdown=60)(1, 2)  # the task's way
# [end habits]

assert "somefunction.using(countdown=60)(...)" in message
assert len(recorder.requests) == 1
assert recorder.requests[0].schedule_time is not None

done = [json.loads(line) for line in Path("done.txt").read_text(encoding="utf-8").splitlines()]
assert done == [
    ["anotherfunction"],
    ["headers", 10, "0"],
    ["somefunction", 3],
    ["object", 1],
    ["object", 2],
    ["object", 3],
], done
print("ran:", done)
