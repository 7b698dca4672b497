"""No secret in the repr of the Django adapter's settings object."""

from __future__ import annotations

import secrets

from django.test import override_settings

from im_task_django.conf import apply_settings, get_app_settings, read_settings


def test_the_settings_object_never_shows_the_secret() -> None:
    secret = secrets.token_hex(32)
    read = read_settings({"SECRET": secret, "DEFAULT_QUEUE": "mail"})
    assert read.core["secret"] == secret  # kept, only hidden from the repr
    text = repr(read)
    assert secret not in text
    assert "'secret': <hidden>" in text
    assert "'default_queue': 'mail'" in text
    assert text.startswith("AppSettings(core=")
    with override_settings(IM_TASK={"SECRET": secret}):
        apply_settings()
        assert secret not in repr(get_app_settings())
