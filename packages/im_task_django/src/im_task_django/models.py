"""The transactional outbox: ``transactional=True`` tasks waiting for their send."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models
from django.utils import timezone

__all__ = ["OutboxTask"]


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
