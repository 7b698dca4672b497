"""Django admin, read-only: the results of tasks sent through Django's task framework, the outbox, the dead letters.

Dead letters have one action, "Replay": each selected task is enqueued again
through the transport in force (same signed body, URL, queue and headers,
a new name) and its letter deleted once the queue accepted it. It needs the
``change`` permission on dead letters.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from im_task_django.models import DeadLetterRecord, OutboxTask, TaskResultRecord

__all__ = ["DeadLetterRecordAdmin", "OutboxTaskAdmin", "TaskResultRecordAdmin"]


class _ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    """Shows rows; nobody adds, changes or deletes them here."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Every field."""
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Rows are written by im-task only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows are viewed, not changed."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows are left to im-task (the outbox sweep, ``manage.py im_task_dead purge``) or to code (old results)."""
        return False


@admin.register(TaskResultRecord)
class TaskResultRecordAdmin(_ReadOnly):
    """Lists and shows task results; nobody adds, changes or deletes them here (the runner writes them).

    Each names the im-task task that ran it last (``im_task_name``, on its
    ``queue_name``), the name the outcome lines, ``im-task queue show`` and
    the dead letters use, and links to its dead letter when it has one.
    """

    list_display = ("task_path", "status", "queue_name", "im_task_name", "enqueued_at", "finished_at", "attempts")
    list_filter = ("status", "queue_name", "backend")
    search_fields = ("task_path", "id", "im_task_name")
    date_hierarchy = "enqueued_at"
    ordering = ("-enqueued_at",)

    @admin.display(description="attempts")
    def attempts(self, record: TaskResultRecord) -> int:
        """How many attempts the queue made (one worker id each)."""
        return len(record.worker_ids or [])

    @admin.display(description="dead letter")
    def dead_letter(self, record: TaskResultRecord) -> str:
        """A link to the dead letter of the im-task task that ran it last, if it has one."""
        letter = (
            DeadLetterRecord.objects.using(record._state.db or "default")
            .filter(queue=record.queue_name, name=record.im_task_name)
            .only("pk")
            .first()
            if record.im_task_name
            else None
        )
        if letter is None:
            return "-"
        url = reverse(f"admin:{DeadLetterRecord._meta.app_label}_deadletterrecord_change", args=(letter.pk,))
        return format_html('<a href="{}">{} of queue {}</a>', url, record.im_task_name, record.queue_name)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Every field, and the link to the dead letter: results are written by the task runner only."""
        return [*super().get_readonly_fields(request, obj), "dead_letter"]


@admin.register(OutboxTask)
class OutboxTaskAdmin(_ReadOnly):
    """The transactional outbox: tasks committed and waiting for their send (sent rows until the sweep)."""

    list_display = ("name", "queue", "url", "created", "claimed_until", "sent_at")
    list_filter = ("queue",)
    search_fields = ("name", "url")
    date_hierarchy = "created"
    exclude = ("body",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Every field but the body (a signed envelope, unreadable here)."""
        return [f.name for f in OutboxTask._meta.fields if f.name != "body"]


@admin.register(DeadLetterRecord)
class DeadLetterRecordAdmin(_ReadOnly):
    """Tasks that failed permanently, gave up or were dropped, with their call and last error; "Replay" sends again."""

    list_display = ("name", "queue", "outcome", "attempts", "recorded_at", "url")
    list_filter = ("outcome", "queue")
    search_fields = ("name", "url", "error")
    date_hierarchy = "recorded_at"
    actions = ("replay",)
    fields = ("name", "queue", "url", "outcome", "attempts", "recorded_at", "call", "headers", "last_error")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Every field shown."""
        return list(self.fields)

    @admin.display(description="call")
    def call(self, record: DeadLetterRecord) -> str:
        """The function and arguments, decoded only once the signature verified with the secrets in force."""
        from im_task.dead import describe
        from im_task_django.deadletters import as_letter

        about = describe(as_letter(record))
        return f"{about.function} with {about.arguments}" if about.function else about.note

    @admin.display(description="last error")
    def last_error(self, record: DeadLetterRecord) -> str:
        """The traceback or reason, as written."""
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', record.error)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Replaying needs the permission to change dead letters."""
        user: Any = request.user
        return bool(user.has_perm(f"{DeadLetterRecord._meta.app_label}.change_deadletterrecord"))

    @admin.action(description="Replay the selected tasks", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetterRecord]) -> None:
        """Enqueues each selected task again through the transport in force; its letter goes once accepted."""
        from im_task.dead import DeadLetterError, replay
        from im_task.errors import ConfigurationError, EnqueueError
        from im_task_django.deadletters import DjangoDeadLetterStore, as_letter

        store = DjangoDeadLetterStore(queryset.db)
        done = 0
        for record in queryset:
            try:
                replay(as_letter(record), store=store)
            except (DeadLetterError, EnqueueError, ConfigurationError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            done += 1
        if done:
            self.message_user(request, f"Replayed {done} task(s) under new names.", messages.SUCCESS)
