"""Where settings come from: ``configure()``, then the framework's settings, then ``IM_TASK_*``, then defaults.

The script sets environment variables for itself, then layers the other
sources over them, checking the setting in force after each step. It exits
with status 0 only if every check holds.
"""

import os

from im_task import ConfigurationError, configure
from im_task.adapter_settings import read_adapter_settings
from im_task.config import environment_variable, get_settings, set_framework_settings, unknown_environment_variables
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
os.environ["IM_TASK_SECRET"] = "new-secret-a1b2c3d4e5f60718293a4b5c,old-secret-0f1e2d3c4b5a69788796a5b4"  # two
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

# [start typos]
# Every adapter reads its framework's settings with the one parser, spelt as the framework spells them:
flask_keys = {"IM_TASK_SECRTE": "s3cret-from-the-vault-0123"}
try:
    read_adapter_settings(flask_keys, source="app.config", spell=environment_variable)
except ConfigurationError as exc:
    typo = str(exc)
    print(typo)  # app.config: unknown key 'IM_TASK_SECRTE' (did you mean 'IM_TASK_SECRET'?); known keys: ...
try:
    read_adapter_settings({"Route": "/tasks"}, source="app.config['im_task']")  # webapp2: lower-case keys
except ConfigurationError as exc:
    case = str(exc)
    print(case)  # app.config['im_task']: 'Route' must be written 'route'.

os.environ["IM_TASK_MAX_BODYSIZE"] = "4096"  # a misspelt variable is read by nobody...
print(unknown_environment_variables())  # ...so every adapter logs it at start-up, with the closest known name
assert unknown_environment_variables() == [
    "$IM_TASK_MAX_BODYSIZE is not an im-task setting (did you mean 'IM_TASK_MAX_BODY_SIZE'?); it is ignored."
]
# [end typos]
assert "(did you mean 'IM_TASK_SECRET'?)" in typo
assert case == "app.config['im_task']: 'Route' must be written 'route'."
del os.environ["IM_TASK_MAX_BODYSIZE"]
print("Every check holds.")
