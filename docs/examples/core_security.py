"""Secrets: rotating them, the rules they must meet, the local development secret and its directory.

A ``RecordingTransport`` keeps the signed tasks; ``run_all()`` delivers them to
the real endpoint, which answers 403 to any body it cannot verify. The script
exits with status 0 only if every check holds.
"""

import os
import stat
from pathlib import Path

from im_task import ConfigurationError, configure, task
from im_task.config import get_keyring
from im_task.runtime import check_configuration
from im_task.transports import RecordingTransport

OLD = "0f1e2d3c4b5a69788796a5b4c3d2e1f0-old"
NEW = "a1b2c3d4e5f60718293a4b5c6d7e8f90-new"

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

# [start weak]
for weak in ("too-short", "changeme-changeme-changeme-changeme", "a" * 40):
    try:
        configure(secret=weak)
    except ConfigurationError as exc:
        print(f"Refused: {exc}")
    else:
        raise AssertionError(f"{weak!r} must be refused")
# [end weak]

# [start local-secret]
configure(secret=None, environment="development")  # no secret configured: one is made, once, in data_dir
check_configuration()  # logs a WARNING, once: a generated development secret is in use
data_dir = Path("state")
assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700  # the data directory: its owner only
assert (data_dir / ".gitignore").read_text().splitlines()[-1] == "*"  # git status never offers it
assert stat.S_IMODE((data_dir / "secret").stat().st_mode) == 0o600  # the secret: readable by its owner only
# [end local-secret]
ping()
assert [r.status for r in recorder.run_all()] == [200]

# [start unsafe-file]
os.chmod("state/secret", 0o644)  # anyone on the machine could read it, or have planted it
configure(default_queue="again")  # settings changed: the keyring is made again
try:
    get_keyring()
except ConfigurationError as exc:
    print(f"Refused: {exc}")  # ... Fix it with `chmod 600 state/secret` ...
else:
    raise AssertionError("a secret file others may read must be refused")
os.chmod("state/secret", 0o600)
assert len(get_keyring()) == 1
# [end unsafe-file]

# [start other-transport]
configure(transport="cloudtasks")  # or any transport but the local queue and the in-process ones
try:
    get_keyring()
except ConfigurationError as exc:
    print(f"Refused: {exc}")
else:
    raise AssertionError("a generated secret must not sign tasks sent through Cloud Tasks")
configure(transport=recorder)
# [end other-transport]

# [start production]
configure(environment="production")  # what IM_TASK_ENV=production or GAE_ENV=standard imply
try:
    check_configuration()  # adapters call this at start-up
except ConfigurationError as exc:
    print(f"Refused: {exc}")
else:
    raise AssertionError("production without a secret must be refused")
# [end production]
