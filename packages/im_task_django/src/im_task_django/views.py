"""The task endpoint as a Django view: a few lines over the core executor."""

from __future__ import annotations

from typing import IO, Any, cast

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from im_task.executor import handle_request

__all__ = ["task_view"]


def _login_not_required(view: Any) -> Any:
    try:  # Django 5.1+: exempt from LoginRequiredMiddleware; the executor checks the caller
        from django.contrib.auth.decorators import login_not_required
    except ImportError:
        return view
    return login_not_required(view)


@_login_not_required
@csrf_exempt
def task_view(request: HttpRequest, task_path: str = "") -> HttpResponse:
    """Runs the task POSTed to the task route.

    Every method reaches the executor, which answers 405 (``Allow: POST``)
    to anything but POST. The body is not read here: the executor reads the
    request as a stream, at most ``max_body_size`` bytes (413 past that).
    If im-task is misconfigured (a setting changed since start-up, e.g. to
    production without a secret), the view logs why and answers 500, so the
    queue keeps the task and retries it once the configuration is fixed.

    Args:
        request: The request.
        task_path: The path under the task route (``<module>/<function>``);
            for logs only.

    Returns:
        The executor's answer.
    """
    result = handle_request(
        request.method or "GET",
        request.path,
        cast("IO[bytes]", request),  # HttpRequest.read() reads the bounded body stream
        request.headers,
        request.META.get("REMOTE_ADDR"),
    )
    response = HttpResponse(result.body, status=result.status)
    for name, value in result.headers:
        response[name] = value
    # The executor has logged the outcome at the right level (a 408 only at debug); keep django.request's
    # "Internal Server Error"/"Request Timeout" lines out, as Django does for responses it logged itself.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
