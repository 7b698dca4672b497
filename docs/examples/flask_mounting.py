"""Flask: mounting the task blueprint yourself, under a prefix of your own.

The script runs in an empty directory and exits with status 0 only if the task,
sent to the prefixed route, ran there.
"""

# [start mounting]
from flask import Flask

import im_task.local_target
import im_task.runtime
from im_task import set_taskroute, task
from im_task_flask import make_blueprint

set_taskroute("/internal/_ah/task")  # at start-up, before your tasks are defined: tasks are sent here

ran = []


@task
def rebuild_index(shard):
    ran.append(shard)


app = Flask(__name__)
app.register_blueprint(make_blueprint())  # serves the current task route; no url_prefix
im_task.local_target.register_local_target(app)  # what ImTask(app) would do: the local queue delivers here
im_task.runtime.check_configuration()

print(rebuild_index.url)  # /internal/_ah/task/__main__/rebuild_index
rebuild_index(3)
# [end mounting]

assert rebuild_index.url == "/internal/_ah/task/__main__/rebuild_index"
queue = im_task.runtime.get_transport()
assert queue.join(timeout=30)
queue.close()
assert ran == [3], ran

# With url_prefix instead, the blueprint would serve /internal/internal/_ah/task/...: not where tasks go.
prefixed = Flask("prefixed")
prefixed.register_blueprint(make_blueprint(), url_prefix="/internal")
assert prefixed.test_client().post(rebuild_index.url).status_code == 404
