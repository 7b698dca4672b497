"""``manage.py im_task_dead``: ``im-task dead`` with this project's settings and its dead-letter table."""

from __future__ import annotations

from im_task_django.management.passthrough import ImTaskCommand


class Command(ImTaskCommand):
    """Runs ``im-task dead list|show|replay|purge`` (same options) after Django applied ``settings.IM_TASK``.

    The dead letters are those of the store in force: the project's database
    (``DeadLetterRecord``) unless ``IM_TASK["DEAD_LETTER_STORE"]`` names another.
    """

    help = (
        "List, show, replay or purge dead letters (tasks that failed permanently, gave up or were dropped): "
        "'im-task dead' with this project's IM_TASK settings, e.g. 'list', 'show NAME', 'replay NAME', 'purge --yes'."
    )

    im_task_command = "dead"
    arguments_help = "an 'im-task dead' command and its options"
