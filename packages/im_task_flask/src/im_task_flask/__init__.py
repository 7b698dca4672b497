"""im-task for Flask: serve the task endpoint from a Flask app.

Example:
    >>> from flask import Flask
    >>> from im_task_flask import ImTask
    >>> app = Flask(__name__)
    >>> app.config["IM_TASK_TRANSPORT"] = "recording"
    >>> im_task = ImTask(app)  # tasks are now served at /_ah/task/<module>/<function>
"""

from im_task_flask.blueprint import make_blueprint
from im_task_flask.compat import setuptasksforflask
from im_task_flask.extension import CONFIG_KEYS, ImTask, ImTaskState

__version__ = "2.0.0"

__all__ = ["CONFIG_KEYS", "ImTask", "ImTaskState", "make_blueprint", "setuptasksforflask"]
