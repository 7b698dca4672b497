"""The demo's views: list the scenarios, start one."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from demo_kit import scenarios
from django_project.tasks import SCENARIOS


@require_GET
def index(request: HttpRequest) -> JsonResponse:
    """``GET /``: the scenarios' names."""
    return JsonResponse({"scenarios": list(SCENARIOS)})


@csrf_exempt  # the demo POSTs without a CSRF token; a real app keeps CSRF protection
@require_POST
def start(request: HttpRequest, name: str) -> HttpResponse:
    """``POST /scenarios/<name>``: starts one scenario, whose tasks then run on the queue."""
    try:
        scenarios.start(name, SCENARIOS)  # a view calls a task like any function: it is enqueued
    except scenarios.UnknownScenarioError as exc:
        raise Http404(str(exc)) from exc
    return HttpResponse(f"started {name}\n", status=202)
