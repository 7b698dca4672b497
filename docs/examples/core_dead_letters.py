"""What happened to my task: the outcome lines, a dead letter, ``im-task dead``, and a replay.

Runs on the local queue, delivering in process, with the default local
dead-letter store (``deadletters.sqlite3`` in the data directory). A task
that fails permanently is kept as a dead letter with its call and its
traceback; ``im-task dead list`` (a real process) shows it; once the cause is
fixed, a replay runs it. It exits with status 0 only if every check holds.
"""

import logging
import subprocess
import sys

from im_task import PermanentTaskFailure, configure, task
from im_task.dead import describe, replay
from im_task.stores.deadletters import get_dead_letter_store
from im_task.transports import LocalTransport
from im_task.wsgi import TaskWSGIApp

logging.basicConfig(level=logging.CRITICAL)  # the failure's traceback is logged at ERROR: not shown here
stock = {"widget": 0}
shipped = []


@task
def ship(order_id, item):
    if stock[item] == 0:
        raise PermanentTaskFailure(f"{item} is out of stock")
    shipped.append(order_id)


# [start lines]
class Lines(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())


lines = []
outcomes = logging.getLogger("im_task.outcomes")  # one INFO line per outcome; off with log_outcomes=False
outcomes.setLevel(logging.INFO)
outcomes.addHandler(Lines())
outcomes.propagate = False
# [end lines]

# [start dead]
queue = LocalTransport("tasks.sqlite3", target=TaskWSGIApp())
configure(transport=queue)

ship(42, "widget")
queue.join()

store = get_dead_letter_store()  # deadletters.sqlite3 in the data directory (Datastore on Google Cloud)
(letter,) = store.list()
assert (letter.outcome, letter.attempts) == ("failed", 1)
assert letter.error.splitlines()[-1] == "im_task.errors.PermanentTaskFailure: widget is out of stock"
about = describe(letter)  # decoded only once its signature verified
assert about.function == "__main__.ship"
assert about.arguments == "(42, 'widget'), {}"
print(lines[-1])  # Task '...' of queue 'default' ('/_ah/task/__main__/ship') failed permanently on attempt 1 ...
assert "failed permanently on attempt 1" in lines[-1]
assert "kept as a dead letter" in lines[-1]
# [end dead]

# [start cli]
listing = subprocess.run(
    [sys.executable, "-m", "im_task", "dead", "list"], capture_output=True, text=True, check=True
).stdout
print(listing)  # QUEUE  NAME  OUTCOME  ATTEMPTS  RECORDED  URL
assert letter.name in listing
assert " failed " in listing
# [end cli]

# [start replay]
stock["widget"] = 5  # the cause is fixed
replay(letter)  # the same signed body, through the transport in force, under a new name
queue.join()
assert shipped == [42]
assert list(store.list()) == []  # a replayed letter is forgotten
assert " ran on attempt 1 " in lines[-1]
# [end replay]
queue.close()
