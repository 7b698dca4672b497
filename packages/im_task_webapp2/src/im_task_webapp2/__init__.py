"""webapp2 routes and handler for im-task: run any callable later as an HTTP task.

Example:
    >>> import webapp2
    >>> from im_task_webapp2 import routes, setup
    >>> app = setup(webapp2.WSGIApplication([*routes()], config={"im_task": {}}))

``routes()`` serves every endpoint of the core, the task endpoint under the task route (``/_ah/task`` by
default); ``setup(app)`` reads ``app.config["im_task"]``, registers the app
with the embedded local queue and opens the task routes to every HTTP method.
"""

from im_task_webapp2.handler import TaskHandler
from im_task_webapp2.methods import TaskMethods, TaskRoute
from im_task_webapp2.routes import ROUTE_NAME, addrouteforwebapp2, routes
from im_task_webapp2.settings import CONFIG_KEY, is_set_up, setup

__version__ = "2.0.0"

__all__ = [
    "CONFIG_KEY",
    "ROUTE_NAME",
    "TaskHandler",
    "TaskMethods",
    "TaskRoute",
    "addrouteforwebapp2",
    "is_set_up",
    "routes",
    "setup",
]
