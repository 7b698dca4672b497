"""``manage.py im_task_queue``: ``im-task queue`` with this project's settings."""

from __future__ import annotations

from im_task_django.management.passthrough import ImTaskCommand


class Command(ImTaskCommand):
    """Runs ``im-task queue list|stats|show|retry|purge`` (same options) after Django applied ``settings.IM_TASK``.

    The queue file, the secrets that verify a task's signature and the tasks'
    modules are the project's, so ``show`` decodes the function and arguments
    of a task the project enqueued.
    """

    help = (
        "Inspect the local queue: 'im-task queue' with this project's IM_TASK settings, e.g. 'list', "
        "'list --state failed', 'stats', 'show NAME', 'retry NAME', 'purge --state done --yes'."
    )

    im_task_command = "queue"
    arguments_help = "an 'im-task queue' command and its options"
