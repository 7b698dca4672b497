"""The demo's one model: orders, confirmed by a transactional task after they commit."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    """An order; its confirmation task is enqueued in the transaction that creates it."""

    item: models.CharField[str, str] = models.CharField(max_length=100)

    def __str__(self) -> str:
        return f"order {self.pk} ({self.item})"
