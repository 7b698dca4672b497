"""A model for transactional tests: rows written next to the tasks."""

from __future__ import annotations

from django.db import models


class Note(models.Model):
    text: models.CharField[str, str] = models.CharField(max_length=200)

    class Meta:
        app_label = "django_testproject"
