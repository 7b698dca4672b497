"""A URLconf that lists the task patterns itself, without include()."""

from django.urls import path

from django_testproject.urls import hello
from im_task_django.urls import task_urlpatterns

urlpatterns = [*task_urlpatterns(), path("hello", hello)]
