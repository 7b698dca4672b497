"""Tasks for the settings-change-during-delivery test: importable, so they travel by reference."""

from __future__ import annotations

import threading

from im_task import task

started = threading.Event()
release = threading.Event()
followed_up = threading.Event()


@task
def follow_up() -> None:
    """The task the chain enqueues."""
    followed_up.set()


@task
def chain() -> None:
    """Waits until the test has started changing the settings, then enqueues a follow-up."""
    started.set()
    release.wait(10)
    follow_up()
