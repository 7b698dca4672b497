"""What a running task knows of itself: the context helpers, ``includeheaders`` and ``log_as_retried``.

The task endpoint is served over real HTTP on 127.0.0.1 and the embedded
local queue delivers to it, with the headers Cloud Tasks sends. The task fails
its first attempt on purpose, so the second attempt is a retry. The script
exits with status 0 only if the task saw what is documented.
"""

import logging

from im_task import (
    SingularTaskFailure,
    configure,
    get_execution_count,
    get_queue_name,
    get_retry_count,
    get_task_name,
    is_from_task_queue,
    log_as_retried,
    task,
)
from im_task.testing import serve_wsgi
from im_task.transports import LocalTransport
from im_task.wsgi import TaskWSGIApp

attempts = []
levels = []


class KeepLevels(logging.Handler):
    def emit(self, record):
        levels.append(record.levelname)


reports_logger = logging.getLogger("reports")
reports_logger.setLevel(logging.INFO)
reports_logger.addHandler(KeepLevels())


# [start context]
@task(queue="reports", includeheaders=True)
def build_report(day, headers):
    attempts.append(
        {
            "from_queue": is_from_task_queue(),
            "task": get_task_name(),
            "queue": get_queue_name(),
            "retries": get_retry_count(),
            "executions": get_execution_count(),
            "retry_header": headers["x-appengine-taskretrycount"],  # any case works
        }
    )
    log_as_retried("Building the report of %s", day, logger=reports_logger)
    if get_retry_count() == 0:
        raise SingularTaskFailure("the first attempt always fails, to show a retry")


# [end context]

assert not is_from_task_queue()
assert get_task_name() is None
assert get_retry_count() == 0

with serve_wsgi(TaskWSGIApp()) as base_url, LocalTransport(target=base_url) as queue:
    configure(transport=queue)
    handle = build_report("2024-06-01")
    assert queue.join(timeout=60, scheduled=True), "the queue did not finish in time"

for attempt in attempts:
    print(attempt)
assert [a["retries"] for a in attempts] == [0, 1]
assert [a["executions"] for a in attempts] == [0, 1]  # a 408 is an answer, so it counts as an execution
assert [a["retry_header"] for a in attempts] == ["0", "1"]
assert all(a["from_queue"] and a["task"] == handle.name and a["queue"] == "reports" for a in attempts)
assert levels == ["INFO", "WARNING"], levels
