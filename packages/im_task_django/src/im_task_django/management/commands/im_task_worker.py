"""``manage.py im_task_worker``: ``im-task worker`` with this project's settings."""

from __future__ import annotations

from im_task_django.management.passthrough import ImTaskCommand


class Command(ImTaskCommand):
    """Runs ``im-task worker`` (same options), after Django has applied ``settings.IM_TASK``.

    The queue database, the secret and the transport settings come from
    ``IM_TASK``, so the worker finds the queue the project writes to.
    """

    help = (
        "Deliver the local queue's tasks to the running project over HTTP: 'im-task worker' with this project's "
        "IM_TASK settings. Takes the options of 'im-task worker', e.g. --target http://127.0.0.1:8000 --until-empty."
    )

    im_task_command = "worker"
    arguments_help = "options of 'im-task worker'"

    def run_im_task(self, arguments: list[str], prog: str) -> int:
        """Runs ``im-task worker``, whose usage and errors name this command (``manage.py im_task_worker``)."""
        from im_task import cli

        return cli.main(["worker", *arguments], worker_prog=prog)
