"""The view of every endpoint of the core: a few lines over the endpoint's handler."""

from __future__ import annotations

from typing import IO, Any, cast

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from im_task.endpoints import TASK_ENDPOINT, Endpoint
from im_task.wsgi import environ_headers

__all__ = ["endpoint_view", "task_view"]


def _login_not_required(view: Any) -> Any:
    try:  # Django 5.1+: exempt from LoginRequiredMiddleware; the endpoint checks the caller
        from django.contrib.auth.decorators import login_not_required
    except ImportError:
        return view
    return login_not_required(view)


@_login_not_required
@csrf_exempt
def endpoint_view(request: HttpRequest, endpoint: Endpoint, **captured: str) -> HttpResponse:
    """Serves a request with an endpoint of the core (:mod:`im_task_django.urls` passes it).

    Every method reaches the endpoint, which answers 405 (``Allow: POST``)
    to anything it does not take. The body is not read here: the endpoint
    reads the request as a stream, at most ``MAX_BODY_SIZE`` bytes (413 past
    that). If im-task is misconfigured (a setting changed since start-up,
    e.g. to production without a secret), the endpoint logs why and answers
    500, so the queue keeps the task and retries it once the configuration
    is fixed.

    Args:
        request: The request.
        endpoint: The endpoint to serve it.
        **captured: What the URL pattern captured (``task_path``: the path
            under the task route); unused: the endpoint reads the whole path.

    Returns:
        The endpoint's answer.
    """
    result = endpoint.handler(
        request.method or "GET",
        request.path,
        cast("IO[bytes]", request),  # HttpRequest.read() reads the bounded body stream
        environ_headers(request.META),  # what request.headers reads, without its copy
        request.META.get("REMOTE_ADDR"),
    )
    response = HttpResponse(result.body, status=result.status)
    for name, value in result.headers:
        response[name] = value
    # The endpoint has logged the outcome at the right level (a 408 only at debug); keep django.request's
    # "Internal Server Error"/"Request Timeout" lines out, as Django does for responses it logged itself.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


@_login_not_required
@csrf_exempt
def task_view(request: HttpRequest, task_path: str = "") -> HttpResponse:
    """The task endpoint's view, for a URLconf that routes the task route itself.

    Args:
        request: The request.
        task_path: The path under the task route; unused: the endpoint reads the whole path.

    Returns:
        The task endpoint's answer.
    """
    response: HttpResponse = endpoint_view(request, TASK_ENDPOINT, task_path=task_path)
    return response
