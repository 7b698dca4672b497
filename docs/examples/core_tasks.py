"""The forms of ``@task``, its options, ``TaskHandle`` and ``.using()``.

A ``RecordingTransport`` keeps the tasks instead of sending them, so the
script can look at what each call enqueued, then run them all through the real
endpoint with ``run_all()``. It exits with status 0 only if every check holds.
"""

import datetime as dt
import json
from pathlib import Path

from im_task import TaskAlreadyExistsError, configure, task
from im_task.transports import RecordingTransport

recorder = RecordingTransport()
configure(transport=recorder)


def record(*what):
    """Notes that a task ran, in a file: a task pickled by value gets copies of the globals it uses."""
    with open("done.txt", "a", encoding="utf-8") as f:
        f.write(json.dumps(what) + "\n")


# [start forms]
@task  # bare: the configured default queue, no delay
def notify(user_id):
    record("notify", user_id)


@task(queue="mail", countdown=60, retry_options={"task_retry_limit": 3})  # with options
def send_mail(to, subject):
    record("mail", to, subject)


def resize(image_id, width=100):
    record("resize", image_id, width)


resize_later = task(resize, queue="images")  # as a factory, around a callable you did not write

notify(7)
send_mail("ada@example.com", subject="Welcome")
resize_later(3, width=640)
# [end forms]

# [start handle]
handle = send_mail("grace@example.com", subject="Hello")
print(handle.name)  # the task's name: given with name=, or chosen by the queue
print(handle.queue)  # "mail"
print(handle.url)  # "/_ah/task/<module>/send_mail"
print(handle.eta)  # about 60 seconds from now, in UTC
# [end handle]
assert handle.queue == "mail"
assert handle.url.endswith("/send_mail")
assert handle.eta is not None
assert dt.timedelta(seconds=50) < handle.eta - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(seconds=60)

# [start using]
urgent_mail = send_mail.using(queue="urgent", countdown=0)  # a copy; send_mail keeps its options
urgent_mail("ops@example.com", subject="Disk full")
# [end using]
assert recorder.requests[-1].queue == "urgent"
assert recorder.requests[-1].schedule_time is None
assert send_mail.options.queue == "mail"


# [start named]
@task(queue="reports")
def build_report(day):
    record("report", day)


def build_report_once(day):
    try:
        build_report.using(name=f"report-{day}")(day)
    except TaskAlreadyExistsError:
        print(f"The report of {day} is already on its way.")


build_report_once("2024-06-01")
build_report_once("2024-06-01")  # refused by the queue: prints the message
# [end named]
assert sum(1 for r in recorder.requests if r.name == "report-2024-06-01") == 1


# [start callables]
def make_greeter(greeting):
    @task  # a closure: `greeting` travels with the task
    def greet(name):
        record(f"{greeting}, {name}!")

    return greet


class Account:
    def __init__(self, number):
        self.number = number

    @task(queue="accounts")  # a method: the instance travels with the task
    def close(self):
        record("closed", self.number)


make_greeter("Hello")("Ada")
task(lambda: record("a lambda"))()
Account(42).close()
# [end callables]
assert recorder.requests[-1].url.endswith("/Account/close")


# [start spread]
@task(queue=["bulk-1", "bulk-2", "bulk-3"])  # each call picks one at random
def index_document(doc_id):
    record("indexed", doc_id)


for doc_id in range(6):
    index_document(doc_id)
# [end spread]
assert {r.queue for r in recorder.requests[-6:]} <= {"bulk-1", "bulk-2", "bulk-3"}

responses = recorder.run_all()  # every recorded task, through the real endpoint
assert [r.status for r in responses] == [200] * len(responses), [r.status for r in responses]
done = [tuple(json.loads(line)) for line in Path("done.txt").read_text(encoding="utf-8").splitlines()]
assert ("notify", 7) in done
assert ("mail", "ada@example.com", "Welcome") in done
assert ("resize", 3, 640) in done
assert ("report", "2024-06-01") in done
assert ("Hello, Ada!",) in done
assert ("a lambda",) in done
assert ("closed", 42) in done
assert sorted(d[1] for d in done if d[0] == "indexed") == list(range(6))
print(f"Ran {len(responses)} tasks.")
