"""A URLconf that forgets the task endpoint (for the im_task.E006 check)."""

from django.urls import path

from django_testproject.urls import hello

urlpatterns = [path("hello", hello)]
