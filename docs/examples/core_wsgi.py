"""The task endpoint in a plain WSGI application, without a framework adapter.

``TaskWSGIApp(fallback=app)`` serves task paths and passes everything else to
your application. Registering it as the local target lets the default local
queue deliver to it with no configuration at all. The script exits with
status 0 only if both the application and the task endpoint answered.
"""

import urllib.request

from im_task import task
from im_task.local_target import register_local_target
from im_task.runtime import get_transport
from im_task.testing import serve_wsgi
from im_task.wsgi import TaskWSGIApp

welcomed = []


@task
def welcome(user):
    welcomed.append(user)


# [start wsgi]
def website(environ, start_response):
    """Your existing WSGI application."""
    user = environ["PATH_INFO"].strip("/") or "nobody"
    welcome(user)  # enqueue a task from a request
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"Hello, {user}\n".encode()]


application = TaskWSGIApp(fallback=website)  # /_ah/task/... is served here, the rest by `website`
register_local_target(application)  # the local queue delivers to it, in process
# [end wsgi]

with serve_wsgi(application) as base_url:  # any WSGI server will do: gunicorn, waitress, uwsgi...
    page = urllib.request.urlopen(base_url + "/ada", timeout=30).read()
assert page == b"Hello, ada\n", page

queue = get_transport()  # the default: a LocalTransport in ./.im_task/
assert queue.join(timeout=30)
queue.close()
assert welcomed == ["ada"], welcomed
print(f"Welcomed {welcomed}.")
