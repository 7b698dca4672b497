"""Dead letters: the tasks that failed permanently, gave up or were dropped (``im_task_django.deadletters``)."""

from typing import ClassVar

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    """Creates ``im_task_dead_letter``, one row per dead task (queue and name unique)."""

    dependencies: ClassVar[list[tuple[str, str]]] = [("im_task_django", "0003_task_results")]

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.CreateModel(
            name="DeadLetterRecord",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("queue", models.CharField(max_length=100)),
                ("name", models.CharField(max_length=500)),
                ("url", models.TextField()),
                ("body", models.BinaryField(help_text="The signed envelope, as delivered.")),
                (
                    "outcome",
                    models.CharField(
                        choices=[("failed", "failed permanently"), ("gave-up", "gave up"), ("dropped", "dropped")],
                        max_length=10,
                    ),
                ),
                ("attempts", models.IntegerField()),
                ("error", models.TextField(help_text="The last error: a traceback, or a reason.")),
                ("headers", models.JSONField(blank=True, default=dict)),
                ("recorded_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
            ],
            options={
                "verbose_name": "dead letter",
                "db_table": "im_task_dead_letter",
                "ordering": ("-recorded_at", "name"),
                "constraints": [models.UniqueConstraint(fields=("queue", "name"), name="im_task_dead_letter_task")],
            },
        ),
    ]
