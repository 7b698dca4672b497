"""Testing a Flask app's tasks: run them at once, or record them and run them when the test says.

Written as a script so the documentation build can run it; the same code
works in pytest fixtures and tests. It exits with status 0 only if every
assertion holds.
"""

import tempfile

# [start app]
from flask import Flask

import im_task.config
from im_task import configure, task
from im_task.transports import ImmediateTransport, RecordingTransport
from im_task_flask import ImTask

orders = []


@task(queue="orders")
def confirm(order_id):
    orders.append(order_id)


def create_app():
    app = Flask(__name__)

    @app.post("/orders/<int:order_id>")
    def place(order_id):
        confirm(order_id)
        return "", 202

    ImTask(app)
    return app


# [end app]


def fresh_settings(transport):
    """What a pytest fixture does before each test: no leftover settings, a private data dir, a fixed secret."""
    im_task.config.reset()
    configure(data_dir=tempfile.mkdtemp(), secret="test-secret-0123456789abcdefghijk", transport=transport)


# [start immediate]
fresh_settings(ImmediateTransport())
app = create_app()
app.test_client().post("/orders/1")
assert orders == [1]  # the task ran inside the request, through the whole signed path
# [end immediate]

# [start recording]
recorder = RecordingTransport()
fresh_settings(recorder)
app = create_app()
app.test_client().post("/orders/2")
assert orders == [1]  # recorded, not run
(request,) = recorder.requests
assert request.queue == "orders"
assert request.url == "/_ah/task/__main__/confirm"
responses = recorder.run_all()  # through the real endpoint code
assert [r.status for r in responses] == [200]
assert orders == [1, 2]
# [end recording]
print("orders:", orders)
im_task.config.reset()
