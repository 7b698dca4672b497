"""Large payloads: a task over the inline limit travels as a signed reference to a stored payload.

Runs on the local queue with the default ``LocalPayloadStore`` (no Google
Cloud needed), delivering in process. The script checks that a 3 MB argument
arrives intact, that its payload is deleted once the task ran, that a task
whose stored payload was altered is dropped without being unpickled, and that
``payload_store="none"`` refuses such tasks. It exits with status 0 only if
every check holds.
"""

import hashlib
import logging

from im_task import TaskTooLargeError, configure, task
from im_task.stores import LocalPayloadStore
from im_task.transports import LocalTransport
from im_task.wsgi import TaskWSGIApp

logging.basicConfig(level=logging.CRITICAL)  # the altered payload's drop is logged as an error on purpose
seen = []


@task
def checksum(data):
    seen.append((len(data), hashlib.sha256(data).hexdigest()))


# [start large]
queue = LocalTransport("tasks.sqlite3", target=TaskWSGIApp())
store = LocalPayloadStore("payloads.sqlite3")  # the default is payloads.sqlite3 in the data directory
configure(transport=queue, payload_store=store)

data = bytes(range(256)) * 12_000  # about 3 MB, far over the 100 KB inline limit
checksum(data)  # the payload goes to the store; the task carries a signed reference with its SHA-256
queue.join()
assert seen == [(len(data), hashlib.sha256(data).hexdigest())]
assert store.keys() == []  # deleted once the task ran
# [end large]

# [start tampered]
queue.stop()  # keep the next task queued while its payload is altered
checksum(data)
(key,) = store.keys()
store.delete(key)
store._run("INSERT INTO payloads (key, data, created) VALUES (?, ?, 0)", (key, b"not the payload"))
queue.start()
queue.join()
assert len(seen) == 1  # dropped as a permanent failure (answered 200, logged), never unpickled
assert store.keys() == []
# [end tampered]

# [start none]
configure(payload_store="none")  # refuse tasks over the inline limit, as before payload stores
try:
    checksum(data)
except TaskTooLargeError as exc:
    print("refused:", exc)
else:
    raise AssertionError("payload_store='none' must refuse a task over the inline limit")
# [end none]
queue.close()
print("ok")
