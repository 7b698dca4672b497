"""No secret in the repr of what the Flask extension keeps for an app."""

from __future__ import annotations

import secrets

from flask import Flask

from im_task import configure
from im_task.transports import RecordingTransport
from im_task_flask import ImTask


def test_the_extension_state_never_shows_the_secret(recorder: RecordingTransport) -> None:
    configure(secret=None)
    secret = secrets.token_hex(32)
    app = Flask("repr_check")
    app.config.update(IM_TASK_SECRET=secret, IM_TASK_DEFAULT_QUEUE="mail")
    ImTask(app)
    state = app.extensions["im_task"]
    assert state.settings["secret"] == secret  # kept, only hidden from the repr
    text = repr(state)
    assert secret not in text
    assert "'secret': <hidden>" in text
    assert "'default_queue': 'mail'" in text
    assert text.startswith("ImTaskState(extension=")
    assert secret not in repr(app.extensions)
