"""Where settings come from: ``configure()``, then the framework's settings, then ``IM_TASK_*``, then defaults.

The script sets environment variables for itself, then layers the other
sources over them, checking the setting in force after each step. It exits
with status 0 only if every check holds.
"""

import os

from im_task import ConfigurationError, configure
from im_task.config import get_settings, set_framework_settings
from im_task.runtime import get_transport
from im_task.transports import ImmediateTransport

for name in [n for n in os.environ if n.startswith("IM_TASK_")]:
    del os.environ[name]  # start from a clean slate, whatever the shell had

# [start precedence]
assert get_settings().default_queue == "default"  # 4. the default

os.environ["IM_TASK_DEFAULT_QUEUE"] = "from-env"  # 3. an environment variable...
configure()  # ...is read when the settings are next resolved (configure() resolves them again)
assert get_settings().default_queue == "from-env"

set_framework_settings({"default_queue": "from-framework"}, source="settings.IM_TASK")  # 2. what an adapter read
assert get_settings().default_queue == "from-framework"

configure(default_queue="explicit")  # 1. configure() wins
assert get_settings().default_queue == "explicit"

configure(default_queue=None)  # None hands the setting back to the next source
assert get_settings().default_queue == "from-framework"
# [end precedence]

# [start env]
os.environ["IM_TASK_SECRET"] = "new-secret-a1b2c3d4e5f6,old-secret-0f1e2d3c4b5a"  # several, comma-separated
os.environ["IM_TASK_TRANSPORT"] = "immediate"  # a transport by name
os.environ["IM_TASK_MAX_BODY_SIZE"] = "2097152"
os.environ["IM_TASK_ENV"] = "production"
configure()  # resolve again

settings = get_settings()
assert len(settings.secrets) == 2  # the first signs, both verify
assert isinstance(get_transport(), ImmediateTransport)
assert settings.max_body_size == 2 * 1024 * 1024
assert settings.production
# [end env]

# [start errors]
try:
    configure(max_body_size="large")
except ConfigurationError as exc:
    print(exc)  # configure(): max_body_size must be a whole number of bytes >= 1024, not 'large'.
try:
    configure(queue="mail")
except ConfigurationError as exc:
    print(exc)  # configure(): unknown setting 'queue'; known: transport, secret, ...
# [end errors]
assert get_settings().max_body_size == 2 * 1024 * 1024  # a refused configure() changes nothing
print("Every check holds.")
