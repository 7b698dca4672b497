"""URLs of the demo project: the task endpoint, plus the scenario views."""

from __future__ import annotations

from django.urls import include, path

from django_project import views

urlpatterns = [
    path("", include("im_task_django.urls")),  # tasks are POSTed to /_ah/task/...
    path("", views.index),
    path("scenarios/<str:name>", views.start),
]
