"""A URLconf that mounts the task endpoint under a prefix (for the im_task.E006 check)."""

from django.urls import include, path

urlpatterns = [path("api/", include("im_task_django.urls"))]
