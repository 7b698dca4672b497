"""Signed envelopes: rotating secrets, the local development secret, and refusing production without one.

A ``RecordingTransport`` keeps the signed tasks; ``run_all()`` delivers them to
the real endpoint, which answers 403 to any body it cannot verify. The script
exits with status 0 only if every check holds.
"""

import stat
from pathlib import Path

from im_task import ConfigurationError, configure, task
from im_task.config import get_settings
from im_task.runtime import check_configuration
from im_task.transports import RecordingTransport

OLD = "old-secret-0f1e2d3c4b5a69788796"
NEW = "new-secret-a1b2c3d4e5f60718293a"

recorder = RecordingTransport()
configure(transport=recorder, data_dir="state")


@task
def ping():
    pass


# [start rotation]
configure(secret=OLD)
ping()  # signed with OLD, still waiting in the queue

configure(secret=[NEW, OLD])  # step 1, everywhere: NEW signs, both verify
ping()  # signed with NEW
assert [r.status for r in recorder.run_all()] == [200, 200]

ping()  # signed with NEW
configure(secret=NEW)  # step 2, once no task signed with OLD is left: OLD is refused
assert [r.status for r in recorder.run_all()] == [200]
# [end rotation]

configure(secret=OLD)
ping()
configure(secret=NEW)
assert [r.status for r in recorder.run_all()] == [403]  # a body signed with a retired secret

# [start local-secret]
configure(secret=None, environment="development")  # no secret configured: make one, once, in data_dir
check_configuration()
secret_file = Path(get_settings().data_dir, "secret")
assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600  # readable by its owner only
# [end local-secret]
ping()
assert [r.status for r in recorder.run_all()] == [200]

# [start production]
configure(environment="production")  # what IM_TASK_ENV=production or GAE_ENV=standard imply
try:
    check_configuration()  # adapters call this at start-up
except ConfigurationError as exc:
    print(f"Refused: {exc}")
else:
    raise AssertionError("production without a secret must be refused")
# [end production]

try:
    configure(secret="too-short")
except ConfigurationError as exc:
    print(f"Refused: {exc}")
else:
    raise AssertionError("a secret under 16 bytes must be refused")

configure(secret=NEW)
# Outside App Engine, production also needs a check of who calls the endpoint (see core_callers.py):
configure(service_account_email="tasks@my-project.iam.gserviceaccount.com", audience="https://app.example.com")
check_configuration()  # with a secret and a caller check, production starts
print("Every check holds.")
