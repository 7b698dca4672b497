"""The transactional outbox: ``transactional=True`` tasks waiting for their send."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models
from django.utils import timezone

__all__ = ["OutboxTask"]


class OutboxTask(models.Model):
    """A task written in the caller's transaction, to send once it commits.

    The row is deleted once the task is sent. A row that stays (the process
    died between the commit and the send, or the queue could not be reached)
    is sent by :func:`im_task_django.outbox.sweep_outbox`. The task name is
    fixed when the row is written, so a second send is refused by the queue
    instead of running the task twice.
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

    class Meta:
        """Table name and ordering."""

        db_table = "im_task_outbox"
        ordering = ("created", "id")
        verbose_name = "outbox task"

    def __str__(self) -> str:
        return f"{self.name} on {self.queue} ({self.url})"
