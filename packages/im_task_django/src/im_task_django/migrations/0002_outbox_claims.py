"""Claims and sent marks on outbox rows: no row sent by two parties, ages from the commit."""

from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    """Adds ``claimed_by``, ``claimed_until``, ``sent_at`` and the index the sweep reads by.

    Rows written before it have no claim and no clock: a sweep starts their
    clock when it first sees them, as for any row whose sender never ran.
    """

    dependencies: ClassVar[list[tuple[str, str]]] = [("im_task_django", "0001_initial")]

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.AddField(
            model_name="outboxtask",
            name="claimed_by",
            field=models.CharField(
                blank=True, default="", help_text="Who holds the row: its sender, or a sweep.", max_length=40
            ),
        ),
        migrations.AddField(
            model_name="outboxtask",
            name="claimed_until",
            field=models.DateTimeField(
                blank=True,
                help_text="When the claim ends; empty until the commit is seen (the age starts then).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="outboxtask",
            name="sent_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the task was sent; such rows are never sent again, and swept away.",
                null=True,
            ),
        ),
        migrations.AddIndex(
            model_name="outboxtask",
            index=models.Index(fields=["sent_at", "claimed_until"], name="im_task_outbox_due"),
        ),
    ]
