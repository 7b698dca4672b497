"""URLconf of the test project: the task endpoint and one ordinary view."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello")


urlpatterns = [
    path("", include("im_task_django.urls")),
    path("hello", hello),
    path("admin/", admin.site.urls),
]
