"""The results of tasks enqueued through Django's task framework (``im_task_django.backends.ImTaskBackend``)."""

import uuid
from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    """Creates ``im_task_task_result``, one row per task enqueued with results kept."""

    dependencies: ClassVar[list[tuple[str, str]]] = [("im_task_django", "0002_outbox_claims")]

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.CreateModel(
            name="TaskResultRecord",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                (
                    "task_path",
                    models.CharField(help_text="Import path of the Django task (module.function).", max_length=500),
                ),
                ("backend", models.CharField(help_text="Alias in settings.TASKS.", max_length=100)),
                ("queue_name", models.CharField(max_length=100)),
                ("priority", models.IntegerField(default=0)),
                ("takes_context", models.BooleanField(default=False)),
                ("run_after", models.DateTimeField(blank=True, null=True)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("READY", "Ready"),
                            ("RUNNING", "Running"),
                            ("FAILED", "Failed"),
                            ("SUCCESSFUL", "Successful"),
                        ],
                        db_index=True,
                        default="READY",
                        max_length=10,
                    ),
                ),
                ("args", models.JSONField(blank=True, default=list)),
                ("kwargs", models.JSONField(blank=True, default=dict)),
                ("enqueued_at", models.DateTimeField(blank=True, db_index=True, null=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, db_index=True, null=True)),
                ("last_attempted_at", models.DateTimeField(blank=True, null=True)),
                ("return_value", models.JSONField(blank=True, null=True)),
                ("errors", models.JSONField(blank=True, default=list)),
                ("worker_ids", models.JSONField(blank=True, default=list)),
                (
                    "im_task_name",
                    models.CharField(
                        blank=True,
                        default="",
                        help_text="The im-task task that ran it last, on queue_name: its dead letter and "
                        "'im-task queue show' go by this name.",
                        max_length=500,
                    ),
                ),
            ],
            options={
                "verbose_name": "task result",
                "db_table": "im_task_task_result",
                "ordering": ("-enqueued_at",),
            },
        ),
    ]
