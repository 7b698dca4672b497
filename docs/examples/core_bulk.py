"""Many tasks at once (``map``, ``starmap``) and from async code (``enqueue_async``).

The local queue delivers in process to the task endpoint (``TaskWSGIApp``);
a batch is stored in one SQLite transaction. The script checks the handles,
a partial failure, and async enqueue. It exits with status 0 only if every
check holds.
"""

import asyncio
import threading

from im_task import BulkEnqueueError, TaskAlreadyExistsError, configure, task
from im_task.transports import LocalTransport
from im_task.wsgi import TaskWSGIApp

queue = LocalTransport("tasks.sqlite3", target=TaskWSGIApp())
configure(transport=queue)
done = []


@task(queue=["mail-1", "mail-2"])
def send_mail(user_id):
    done.append(("mail", user_id))


@task
def resize(image_id, width):
    done.append(("resize", image_id, width))


# [start map]
handles = send_mail.map([1, 2, 3])  # send_mail(1), send_mail(2), send_mail(3): one batch
print([h.name for h in handles])  # one handle per call, in order
more = send_mail.map(user.id for user in [])  # any iterable, a generator too; none: []
sizes = resize.starmap([(10, 640), (11, 1280)])  # resize(10, 640), resize(11, 1280)
# [end map]
assert len(handles) == 3
assert {h.queue for h in handles} <= {"mail-1", "mail-2"}  # each call picks one of the task's queues
assert more == []
assert len(sizes) == 2
queue.join(timeout=30)
assert sorted(done) == [("mail", 1), ("mail", 2), ("mail", 3), ("resize", 10, 640), ("resize", 11, 1280)], done

# [start partial]
try:
    send_mail.map([8, threading.Lock(), 9])  # a lock cannot be pickled
except BulkEnqueueError as exc:
    print(exc)  # "1 of 3 calls of /_ah/task/__main__/send_mail failed (2 enqueued): call 1: EnqueueError: ..."
    print(exc.handles)  # [TaskHandle(...), None, TaskHandle(...)]: the calls that were enqueued
    print(exc.errors)  # {1: EnqueueError(...)}: why the others were not, by index
    enqueued = [h for h in exc.handles if h is not None]
# [end partial]
else:
    raise AssertionError("a call that cannot be pickled must fail")
assert len(enqueued) == 2
welcome = send_mail.using(name="welcome-7", queue="mail-1")  # a name is unique in its queue
welcome(7)  # the name is taken now
try:
    welcome.map([7])
except BulkEnqueueError as exc:
    refused = exc
else:
    raise AssertionError("a reused name must be refused")
assert refused.handles == [None]
assert isinstance(refused.errors[0], TaskAlreadyExistsError)


# [start async]
async def sign_up(user_ids):
    first = await send_mail.enqueue_async(user_ids[0])  # returns the TaskHandle, without blocking the loop
    rest = await asyncio.gather(*(send_mail.enqueue_async(i) for i in user_ids[1:]))
    return [first, *rest]


handles = asyncio.run(sign_up([20, 21, 22]))
# [end async]
assert len(handles) == 3
queue.join(timeout=30)
assert {("mail", 20), ("mail", 21), ("mail", 22), ("mail", 8), ("mail", 9), ("mail", 7)} <= set(done), done
queue.close()
print("ok")
