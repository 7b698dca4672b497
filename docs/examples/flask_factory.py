"""An app factory with ``ImTask().init_app(app)`` and ``IM_TASK_*`` keys, served over real HTTP.

The local queue delivers to the app over HTTP, as Cloud Tasks does. Then the
same factory refuses to start in production without a secret. The script
exits with status 0 only if both behave as documented.
"""

import logging
import os
import tempfile
from logging.handlers import BufferingHandler

# [start factory]
from flask import Flask

from im_task import ConfigurationError, configure, get_retry_count, task
from im_task.retry import RetryPolicy
from im_task.testing import serve_wsgi
from im_task.transports import LocalTransport
from im_task_flask import ImTask

im_task = ImTask()  # one extension object, any number of apps


def create_app(config=None):
    app = Flask(__name__)
    app.config.from_mapping(
        IM_TASK_ROUTE="/tasks",  # tasks are POSTed to /tasks/<module>/<function>
        IM_TASK_DEFAULT_QUEUE="background",
    )
    app.config.from_mapping(config or {})
    im_task.init_app(app)
    return app


# [end factory]

attempts = []


# [start http]
data_dir = tempfile.mkdtemp()
app = create_app({"IM_TASK_DATA_DIR": data_dir, "IM_TASK_SECRET": "a-long-random-value-from-your-vault"})


@task  # made after init_app set the route, so it is POSTed under /tasks
def resize(image_id):
    attempts.append((image_id, get_retry_count()))
    if get_retry_count() == 0:
        raise RuntimeError("the image store is busy")  # answered 500: the queue retries


with serve_wsgi(app) as base_url:
    queue = LocalTransport(f"{data_dir}/queue.sqlite3", target=base_url, default_policy=RetryPolicy(min_backoff=0.1))
    configure(transport=queue)  # configure() wins over app.config
    handle = resize(7)
    print(f"POST {handle.url} on queue {handle.queue!r}")
    assert queue.join(timeout=30, scheduled=True)
    queue.close()
print("attempts (image, retry count):", attempts)
# [end http]

assert handle.url.startswith("/tasks/")
assert handle.queue == "background"
assert attempts == [(7, 0), (7, 1)]
configure(transport=None)

# [start production]
try:
    create_app({"IM_TASK_ENV": "production", "IM_TASK_TRANSPORT": "recording"})  # and no IM_TASK_SECRET
except ConfigurationError as exc:
    print("refused:", exc)
else:
    raise AssertionError("production without a secret must be refused at start-up")
# [end production]

seen = BufferingHandler(100)  # keeps what im-task logs, to check it below
logging.getLogger("im_task").addHandler(seen)

# [start typos]
try:
    create_app({"IM_TASK_SECRTE": "a-long-random-value-from-your-vault"})  # a typo in a key
except ConfigurationError as exc:
    typo = str(exc)
    print("refused:", typo)  # ... unknown key 'IM_TASK_SECRTE' (did you mean 'IM_TASK_SECRET'?); known keys: ...
else:
    raise AssertionError("an unknown IM_TASK_* key must be refused at start-up")

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
os.environ["IM_TASK_DEFAULT_QUEU"] = "mail"  # a typo in an environment variable: logged when the app starts
create_app({"IM_TASK_DATA_DIR": data_dir})
# WARNING im_task: $IM_TASK_DEFAULT_QUEU is not an im-task setting (did you mean 'IM_TASK_DEFAULT_QUEUE'?); ...
# [end typos]
assert "(did you mean 'IM_TASK_SECRET'?)" in typo
assert any("did you mean 'IM_TASK_DEFAULT_QUEUE'?" in record.getMessage() for record in seen.buffer)
