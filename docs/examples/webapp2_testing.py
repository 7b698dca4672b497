"""Testing a webapp2 app's tasks: run them at once, or record them and run them when the test says.

Written as a script so the documentation build can run it; the same code
works in pytest fixtures and tests. It exits with status 0 only if every
assertion holds.
"""

import tempfile

# [start app]
import webapp2
from webob import Request

import im_task.config
from im_task import configure, task
from im_task.transports import ImmediateTransport, RecordingTransport
from im_task_webapp2 import routes, setup

orders = []


@task(queue="orders")
def confirm(order_id):
    orders.append(order_id)


class OrderHandler(webapp2.RequestHandler):
    def post(self, order_id):
        confirm(int(order_id))
        self.response.status = 202


def make_app():
    return setup(webapp2.WSGIApplication([webapp2.Route("/orders/<order_id:\\d+>", OrderHandler), *routes()]))


# [end app]


def fresh_settings(transport):
    """What a pytest fixture does before each test: no leftover settings, a private data dir, a fixed secret."""
    im_task.config.reset()
    configure(data_dir=tempfile.mkdtemp(), secret="test-secret-0123456789abcdefghijk", transport=transport)


# [start immediate]
fresh_settings(ImmediateTransport())
app = make_app()
Request.blank("/orders/1", method="POST").get_response(app)
assert orders == [1]  # the task ran inside the request, through the whole signed path
# [end immediate]

# [start recording]
recorder = RecordingTransport()
fresh_settings(recorder)
app = make_app()
Request.blank("/orders/2", method="POST").get_response(app)
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
