"""Code written for the old ``im_task_webapp2``: ``addrouteforwebapp2(routes)`` still works.

The script exits with status 0 only if the task route was appended and serves tasks.
"""

# [start legacy]
import webapp2

from im_task_webapp2 import addrouteforwebapp2, setup


class HomeHandler(webapp2.RequestHandler):
    def get(self):
        self.response.write("home")


routes = [("/", HomeHandler)]
addrouteforwebapp2(routes)  # appends the task route, as the old im_task_webapp2 did
app = webapp2.WSGIApplication(routes)
setup(app)  # new: reads app.config["im_task"] and registers the app with the local queue
# [end legacy]

from webob import Request  # noqa: E402 - checks, not part of the example

templates = [getattr(route, "template", None) for route in routes]
assert templates[:2] == [None, "/_ah/task/<path:.+>"], templates
assert "/_ah/queue/deferred" in templates, templates  # and the core's other endpoints, App Engine deferred's too
assert Request.blank("/").get_response(app).text == "home"
reply = Request.blank("/_ah/task/m/f", method="GET").get_response(app)
assert (reply.status_int, reply.headers["Allow"]) == (405, "POST")
print("routes:", routes)
