"""webapp2 configuration: ``app.config["im_task"]``, production checks, the task route, HTTP delivery.

The script runs in an empty directory and exits with status 0 only if every assertion holds.
"""

import logging
import os
from logging.handlers import BufferingHandler

# [start config]
import webapp2

import im_task.config
from im_task import ConfigurationError, configure, set_taskroute, task
from im_task.testing import serve_wsgi
from im_task.transports import LocalTransport
from im_task_webapp2 import routes, setup

config = {
    "im_task": {
        "secret": "a-long-random-value-from-your-secret-store",
        "max_body_size": 512 * 1024,
        "default_queue": "background",
        "data_dir": ".im_task",
    },
}
app = setup(webapp2.WSGIApplication(routes(), config=config))
# [end config]

settings = im_task.config.get_settings()
assert (settings.max_body_size, settings.default_queue) == (512 * 1024, "background")

seen = BufferingHandler(100)  # keeps what im-task logs, to check it below
logging.getLogger("im_task").addHandler(seen)

# [start typos]
try:
    setup(webapp2.WSGIApplication(routes(), config={"im_task": {"max_body": 4096}}))  # a typo in a key
except ConfigurationError as error:
    typo = str(error)
    print("refused at start-up:", typo)  # ...: unknown key 'max_body' (did you mean 'max_body_size'?); ...
else:
    raise AssertionError("an unknown key must be refused at start-up")

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
os.environ["IM_TASK_SECRTE"] = "a-long-random-value"  # a typo in an environment variable: logged by setup()
setup(webapp2.WSGIApplication(routes(), config=config))
# WARNING im_task: $IM_TASK_SECRTE is not an im-task setting (did you mean 'IM_TASK_SECRET'?); it is ignored.
# [end typos]
assert "unknown key 'max_body' (did you mean 'max_body_size'?)" in typo
assert any("did you mean 'IM_TASK_SECRET'?" in record.getMessage() for record in seen.buffer)
del os.environ["IM_TASK_SECRTE"]

# [start production]
im_task.config.reset()
unsafe = webapp2.WSGIApplication(routes(), config={"im_task": {"environment": "production"}})
try:
    setup(unsafe)
except ConfigurationError as error:
    print("refused at start-up:", error)
# [end production]
else:
    raise AssertionError("production without a secret must be refused")
im_task.config.reset()

# [start route]
set_taskroute("/internal/tasks")  # at start-up, before your tasks are decorated
app = setup(webapp2.WSGIApplication(routes()))  # routes() serves /internal/tasks/...

ran = []


@task
def cleanup(days):
    ran.append(days)


print(cleanup.url)  # /internal/tasks/__main__/cleanup
# [end route]

assert cleanup.url == "/internal/tasks/__main__/cleanup"

# [start http]
with serve_wsgi(app) as base_url:
    queue = LocalTransport(".im_task/http-queue.sqlite3", target=base_url)  # delivery over real HTTP
    configure(transport=queue)
    cleanup(30)
    assert queue.join(timeout=30)
    queue.close()
print("ran:", ran)
# [end http]

assert ran == [30]
im_task.config.reset()
set_taskroute("/_ah/task")  # back to the default, as in a fresh process

# [start config route]
config = {"im_task": {"route": "/jobs"}}
app = setup(webapp2.WSGIApplication(routes("/jobs"), config=config))  # the same route in both places


@task
def report(day):
    ran.append(day)


print(report.url)  # /jobs/__main__/report: decorated after setup(app)
# [end config route]

assert report.url == "/jobs/__main__/report"

# routes() made for another route than the one tasks are sent to: refused at start-up, not a 404 per task.
try:
    setup(webapp2.WSGIApplication(routes("/_ah/task"), config=config))
except ConfigurationError as error:
    print("refused at start-up:", error)
else:
    raise AssertionError("task routes elsewhere than the task route must be refused")
