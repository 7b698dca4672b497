"""The outbox table of transactional tasks."""

from typing import ClassVar

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    """Creates ``im_task_outbox``."""

    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.CreateModel(
            name="OutboxTask",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "name",
                    models.CharField(
                        help_text="Task name, fixed when the row is written.", max_length=500, unique=True
                    ),
                ),
                ("queue", models.CharField(max_length=100)),
                ("url", models.TextField()),
                ("body", models.BinaryField()),
                ("headers", models.JSONField(default=dict)),
                ("schedule_time", models.DateTimeField(blank=True, null=True)),
                ("target", models.CharField(blank=True, max_length=500, null=True)),
                ("dispatch_deadline", models.DurationField(blank=True, null=True)),
                ("retry_options", models.JSONField(blank=True, null=True)),
                ("created", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
            ],
            options={
                "verbose_name": "outbox task",
                "db_table": "im_task_outbox",
                "ordering": ("created", "id"),
            },
        ),
    ]
