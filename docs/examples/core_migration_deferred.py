"""Code written for App Engine's ``deferred`` library runs on im-task: only the import changes.

A ``RecordingTransport`` keeps the tasks instead of sending them, so the
script can look at each request, then run them all through the real
endpoints with ``run_all()``. It exits with status 0 only if every check holds.
"""

import json
import urllib.request
from pathlib import Path

from im_task import (
    configure,
    deferred,  # was: from google.appengine.ext import deferred
)
from im_task.testing import serve_wsgi
from im_task.transports import RecordingTransport

recorder = RecordingTransport()
configure(transport=recorder)


def record(*what):
    """Notes that a task ran, in a file: a task pickled by value gets copies of the globals it uses."""
    with open("done.txt", "a", encoding="utf-8") as f:
        f.write(json.dumps(what) + "\n")


# [start defer]
def do_something_later(key, amount):
    record("later", key, amount)


class Counter:
    def __init__(self, name):
        self.name = name

    def add(self, amount):
        record("counter", self.name, amount)


# Use the default URL and queue name, no task name, execute as soon as possible.
deferred.defer(do_something_later, "my-key", 20)
# Providing non-default task queue arguments.
deferred.defer(do_something_later, "my-key", 20, _queue="foo", _countdown=60)
# A bound method travels as invoke_member(obj, "add", ...); _url=None posts to /_ah/queue/<queue>.
deferred.defer(Counter("hits").add, 5, _url=None)
# New: nested functions, closures and lambdas work too (the call is pickled with cloudpickle).
deferred.defer(lambda: record("lambda"))
# [end defer]

assert [r.url for r in recorder.requests] == ["/_ah/queue/deferred"] * 2 + ["/_ah/queue/default", "/_ah/queue/deferred"]
assert [r.queue for r in recorder.requests] == ["default", "foo", "default", "default"]
assert recorder.requests[1].schedule_time is not None
assert [response.status for response in recorder.run_all()] == [200, 200, 200, 200]

# [start by-hand]
# Code that mounted the original handler by hand mounts deferred.application (any path),
# or calls deferred.Handler().post(environ) from its own view.
with serve_wsgi(deferred.application) as base_url:
    request = urllib.request.Request(
        base_url + "/_ah/queue/deferred",
        data=deferred.serialize(do_something_later, "by-hand", 1),  # signed, as defer() sends it
        headers={"X-AppEngine-QueueName": "default", "X-AppEngine-TaskName": "t1"},  # the queue's headers
        method="POST",
    )
    with urllib.request.urlopen(request) as reply:
        print(reply.status)  # 200
# [end by-hand]
assert reply.status == 200

done = [json.loads(line) for line in Path("done.txt").read_text(encoding="utf-8").splitlines()]
assert done == [
    ["later", "my-key", 20],
    ["later", "my-key", 20],
    ["counter", "hits", 5],
    ["lambda"],
    ["later", "by-hand", 1],
], done
print("ran:", done)
