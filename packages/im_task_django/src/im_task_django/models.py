"""The app's tables: the transactional outbox, and the results of tasks sent through Django's task framework."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.db import models
from django.utils import timezone

__all__ = ["DEAD_LETTER_OUTCOMES", "TASK_RESULT_STATUSES", "DeadLetterRecord", "OutboxTask", "TaskResultRecord"]


class OutboxTask(models.Model):
    """A task written in the caller's transaction, to send once it commits.

    The row is written held by its sender (``claimed_by``) with its clock not
    started (``claimed_until`` empty). After the commit the sender claims it
    (``claimed_until`` = now + the lease), sends it and sets ``sent_at``; a
    sweep deletes rows with ``sent_at`` later. A row left unsent (the process
    died, the queue could not be reached) is claimed and sent by
    :func:`im_task_django.outbox.sweep_outbox` once its claim ended
    ``SWEEP_OLDER_THAN`` seconds ago. The task name is fixed when the row is
    written, so a queue that remembers names refuses a second send.
    """

    name: models.CharField[str, str] = models.CharField(
        max_length=500, unique=True, help_text="Task name, fixed when the row is written."
    )
    queue: models.CharField[str, str] = models.CharField(max_length=100)
    url: models.TextField[str, str] = models.TextField()
    body: models.BinaryField[bytes, bytes | memoryview] = models.BinaryField()
    headers: models.JSONField[Any, Any] = models.JSONField(default=dict)
    schedule_time: models.DateTimeField[dt.datetime | None, dt.datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    target: models.CharField[str | None, str | None] = models.CharField(max_length=500, null=True, blank=True)
    dispatch_deadline: models.DurationField[dt.timedelta | None, dt.timedelta | None] = models.DurationField(
        null=True, blank=True
    )
    retry_options: models.JSONField[Any, Any] = models.JSONField(null=True, blank=True)
    created: models.DateTimeField[dt.datetime, dt.datetime] = models.DateTimeField(default=timezone.now, db_index=True)
    claimed_by: models.CharField[str, str] = models.CharField(
        max_length=40, default="", blank=True, help_text="Who holds the row: its sender, or a sweep."
    )
    claimed_until: models.DateTimeField[dt.datetime | None, dt.datetime | None] = models.DateTimeField(
        null=True, blank=True, help_text="When the claim ends; empty until the commit is seen (the age starts then)."
    )
    sent_at: models.DateTimeField[dt.datetime | None, dt.datetime | None] = models.DateTimeField(
        null=True, blank=True, help_text="When the task was sent; such rows are never sent again, and swept away."
    )

    class Meta:
        """Table name and ordering."""

        db_table = "im_task_outbox"
        ordering = ("created", "id")
        indexes = (models.Index(fields=("sent_at", "claimed_until"), name="im_task_outbox_due"),)
        verbose_name = "outbox task"

    def __str__(self) -> str:
        return f"{self.name} on {self.queue} ({self.url})"


#: The statuses of Django's ``TaskResultStatus``, kept here so that the table does not need the framework installed.
TASK_RESULT_STATUSES = (
    ("READY", "Ready"),
    ("RUNNING", "Running"),
    ("FAILED", "Failed"),
    ("SUCCESSFUL", "Successful"),
)


class TaskResultRecord(models.Model):
    """The ``TaskResult`` of a task enqueued through :class:`~im_task_django.backends.ImTaskBackend`.

    Written when the task is enqueued (in the caller's transaction when the
    task waits for its commit), updated by the task endpoint when an attempt
    starts and when it ends; read by ``get_result()`` and the admin.
    ``errors`` holds one ``{"exception_class_path", "traceback"}`` per failed
    attempt; ``worker_ids`` one entry per attempt the queue made (an empty
    string for a delivery that never reached a worker).
    """

    id: models.UUIDField[uuid.UUID, uuid.UUID] = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task_path: models.CharField[str, str] = models.CharField(
        max_length=500, help_text="Import path of the Django task (module.function)."
    )
    backend: models.CharField[str, str] = models.CharField(max_length=100, help_text="Alias in settings.TASKS.")
    queue_name: models.CharField[str, str] = models.CharField(max_length=100)
    priority: models.IntegerField[int, int] = models.IntegerField(default=0)
    takes_context: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    run_after: models.DateTimeField[dt.datetime | None, dt.datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    status: models.CharField[str, str] = models.CharField(
        max_length=10, choices=TASK_RESULT_STATUSES, default="READY", db_index=True
    )
    args: models.JSONField[Any, Any] = models.JSONField(default=list, blank=True)
    kwargs: models.JSONField[Any, Any] = models.JSONField(default=dict, blank=True)
    enqueued_at: models.DateTimeField[dt.datetime | None, dt.datetime | None] = models.DateTimeField(
        null=True, blank=True, db_index=True
    )
    started_at: models.DateTimeField[dt.datetime | None, dt.datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    finished_at: models.DateTimeField[dt.datetime | None, dt.datetime | None] = models.DateTimeField(
        null=True, blank=True, db_index=True
    )
    last_attempted_at: models.DateTimeField[dt.datetime | None, dt.datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    return_value: models.JSONField[Any, Any] = models.JSONField(null=True, blank=True)
    errors: models.JSONField[Any, Any] = models.JSONField(default=list, blank=True)
    worker_ids: models.JSONField[Any, Any] = models.JSONField(default=list, blank=True)
    im_task_name: models.CharField[str, str] = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="The im-task task that ran it last, on queue_name: its dead letter and 'im-task queue show' go by "
        "this name.",
    )

    class Meta:
        """Table name, ordering and names."""

        db_table = "im_task_task_result"
        ordering = ("-enqueued_at",)
        verbose_name = "task result"

    def __str__(self) -> str:
        return f"{self.task_path} {self.status} ({self.id})"


#: What became of a dead task (:data:`im_task.deadletter.DEAD_OUTCOMES`).
DEAD_LETTER_OUTCOMES = (("failed", "failed permanently"), ("gave-up", "gave up"), ("dropped", "dropped"))


class DeadLetterRecord(models.Model):
    """A task that failed permanently, gave up or was dropped: :class:`im_task.deadletter.DeadLetter` as a row.

    Written by the task endpoint through
    :class:`~im_task_django.deadletters.DjangoDeadLetterStore` (the dead-letter
    store of a Django project unless ``IM_TASK["DEAD_LETTER_STORE"]`` names
    another), shown read-only in the admin, which can replay it.
    """

    queue: models.CharField[str, str] = models.CharField(max_length=100)
    name: models.CharField[str, str] = models.CharField(max_length=500)
    url: models.TextField[str, str] = models.TextField()
    body: models.BinaryField[bytes, bytes | memoryview] = models.BinaryField(
        help_text="The signed envelope, as delivered."
    )
    outcome: models.CharField[str, str] = models.CharField(max_length=10, choices=DEAD_LETTER_OUTCOMES)
    attempts: models.IntegerField[int, int] = models.IntegerField()
    error: models.TextField[str, str] = models.TextField(help_text="The last error: a traceback, or a reason.")
    headers: models.JSONField[Any, Any] = models.JSONField(default=dict, blank=True)
    recorded_at: models.DateTimeField[dt.datetime, dt.datetime] = models.DateTimeField(
        default=timezone.now, db_index=True
    )

    class Meta:
        """Table name, ordering, one letter per task."""

        db_table = "im_task_dead_letter"
        ordering = ("-recorded_at", "name")
        constraints = (models.UniqueConstraint(fields=("queue", "name"), name="im_task_dead_letter_task"),)
        verbose_name = "dead letter"

    def __str__(self) -> str:
        return f"{self.name} on {self.queue} ({self.outcome})"
