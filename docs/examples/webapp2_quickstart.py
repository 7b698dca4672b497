"""webapp2 quickstart: ``routes()``, ``setup(app)``, a task, and the local queue delivering to the app.

The script runs in an empty directory; the local queue keeps its tasks in
``./.im_task/queue.sqlite3`` and the development secret in ``./.im_task/secret``.
It exits with status 0 only if the task ran.
"""

# [start quickstart]
import webapp2
from webob import Request

from im_task import task
from im_task.runtime import get_transport
from im_task_webapp2 import routes, setup

welcomed = []


@task
def send_welcome(user):
    welcomed.append(user)  # runs later, in a POST to /_ah/task/__main__/send_welcome


class SignupHandler(webapp2.RequestHandler):
    def post(self, user):
        send_welcome(user)  # enqueued; returns at once
        self.response.status = 202
        self.response.write("Welcome mail queued.")


app = webapp2.WSGIApplication([webapp2.Route("/signup/<user>", SignupHandler), *routes()])
setup(app)  # reads app.config["im_task"] and makes this app the local queue's target

response = Request.blank("/signup/grace", method="POST").get_response(app)
print(response.status, response.text)

queue = get_transport()  # the embedded local queue, made on first use
assert queue.join(timeout=30)  # wait until nothing is due or running
print("welcomed:", welcomed)
# [end quickstart]

assert response.status_int == 202
assert welcomed == ["grace"]

queue.close()
