"""``TaskHandler`` over real HTTP, with the local queue, and on a route of your own."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import webapp2
from im_task_testsupport import sink as webapp2_sink

from im_task import configure, get_retry_count, is_from_task_queue, task
from im_task.headers import make_task_headers
from im_task.testing import serve_wsgi
from im_task.transports import LocalTransport, RecordingTransport
from im_task_webapp2 import TaskHandler, addrouteforwebapp2, routes, setup


class Home(webapp2.RequestHandler):
    def get(self) -> None:
        self.response.write("home")


@task
def remember(value: object) -> None:
    webapp2_sink.record((value, is_from_task_queue(), get_retry_count()))


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_a_task_posted_over_http_runs_and_the_other_routes_still_work() -> None:
    transport = RecordingTransport()
    configure(transport=transport)
    app_routes: list[object] = [("/", Home)]
    addrouteforwebapp2(app_routes)
    app = setup(webapp2.WSGIApplication(app_routes))
    remember("hello")
    [sent] = transport.requests
    with serve_wsgi(app) as base_url:
        headers = {**sent.headers, **make_task_headers(queue_name="default", task_name="t1", retry_count=1)}
        status, response_headers, body = post(base_url + sent.url, sent.body, headers)
        with urllib.request.urlopen(base_url + "/", timeout=30) as home:
            assert home.read() == b"home"
    assert (status, body) == (200, b"OK\n")
    assert response_headers["Content-Type"] == "text/plain; charset=utf-8"
    assert webapp2_sink.calls == [("hello", True, 1)]


def test_the_local_queue_delivers_to_the_app_set_up_in_process(tmp_path: Path) -> None:
    queue = LocalTransport(tmp_path / "queue.sqlite3")  # no target: the app setup() registered
    configure(transport=queue)
    try:
        setup(webapp2.WSGIApplication(routes()))
        remember("queued")
        assert queue.join(timeout=30)
    finally:
        queue.close()
    assert webapp2_sink.calls == [("queued", True, 0)]


def test_on_a_route_of_your_own_webapp2_answers_other_methods_with_405_and_allow_post() -> None:
    app = setup(webapp2.WSGIApplication([webapp2.Route("/jobs/<:.*>", TaskHandler)]))
    with serve_wsgi(app) as base_url:
        request = urllib.request.Request(base_url + "/jobs/m/f", method="GET")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 405
    assert info.value.headers["Allow"] == "POST"


def test_importing_the_package_raises_no_warning_on_this_python() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import im_task_webapp2, webapp2; print(webapp2.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3.0.0"


@task
def crash() -> None:
    raise RuntimeError("secret detail 8472")


def test_a_failing_task_in_a_debug_app_answers_500_without_a_traceback() -> None:
    transport = RecordingTransport()
    configure(transport=transport)
    app = setup(webapp2.WSGIApplication(routes(), debug=True))
    crash()
    [sent] = transport.requests
    headers = {**sent.headers, **make_task_headers(queue_name="default", task_name="t-crash")}
    with serve_wsgi(app) as base_url:
        status, _, body = post(base_url + sent.url, sent.body, headers)
    assert status == 500
    assert b"Traceback" not in body
    assert b"secret detail" not in body
