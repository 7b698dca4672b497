"""Flask quickstart: ``ImTask(app)``, a task, and the local queue delivering to the app with no configuration.

The script runs in an empty directory; the local queue keeps its tasks in
``./.im_task/queue.sqlite3`` and the development secret in ``./.im_task/secret``.
It exits with status 0 only if the task ran.
"""

# [start quickstart]
from flask import Flask

from im_task import task
from im_task.runtime import get_transport
from im_task_flask import ImTask

app = Flask(__name__)
ImTask(app)  # serves tasks at /_ah/task/... and makes this app the local queue's target

welcomed = []


@task
def send_welcome(user):
    welcomed.append(user)  # runs later, in a POST to /_ah/task/__main__/send_welcome


@app.post("/signup/<user>")
def signup(user):
    send_welcome(user)  # enqueued; returns at once
    return "Welcome mail queued.", 202


with app.test_client() as client:
    response = client.post("/signup/ada")
    print(response.status_code, response.get_data(as_text=True))

queue = get_transport()  # the embedded local queue, made on first use
assert queue.join(timeout=30)  # wait until nothing is due or running
print("welcomed:", welcomed)
# [end quickstart]

assert response.status_code == 202
assert welcomed == ["ada"]
queue.close()
