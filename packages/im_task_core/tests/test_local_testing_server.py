"""im_task.testing.serve_wsgi: a real threaded WSGI server for tests."""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import pytest

from im_task.testing import serve_wsgi


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Path", environ["PATH_INFO"])])
    return [environ["REQUEST_METHOD"].encode(), b" ", body]


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def test_serves_requests_on_a_free_local_port() -> None:
    with serve_wsgi(echo) as url:
        assert url.startswith("http://127.0.0.1:")
        assert port_of(url) > 0
        with urllib.request.urlopen(urllib.request.Request(url + "/a/b", data=b"hi"), timeout=5) as response:
            assert response.status == 200
            assert response.headers["X-Path"] == "/a/b"
            assert response.read() == b"POST hi"


def test_handles_concurrent_requests() -> None:
    barrier = threading.Barrier(5, timeout=5)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        barrier.wait()  # all five must be in the app at once
        start_response("200 OK", [])
        return [b"ok"]

    results: list[int] = []
    with serve_wsgi(app) as url:

        def get() -> None:
            with urllib.request.urlopen(url + "/", timeout=10) as response:
                results.append(response.status)

        threads = [threading.Thread(target=get) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert results == [200] * 5


def test_stops_on_exit_even_when_the_body_raises() -> None:
    ports: list[int] = []

    def body() -> None:
        with serve_wsgi(echo) as url:
            ports.append(port_of(url))
            raise RuntimeError("test body failed")

    with pytest.raises(RuntimeError):
        body()
    (port,) = ports
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_app_errors_are_500_and_logged_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise ValueError("broken app")

    with serve_wsgi(broken) as url:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url + "/", timeout=5)
        assert info.value.code == 500
        info.value.close()
    captured = capsys.readouterr()
    assert "broken app" not in captured.err
    assert captured.out == ""


def test_exit_does_not_wait_for_a_hung_request() -> None:
    release = threading.Event()

    def hung(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        release.wait(10)
        start_response("200 OK", [])
        return []

    start = time.monotonic()
    with serve_wsgi(hung) as url:
        conn = http.client.HTTPConnection("127.0.0.1", port_of(url), timeout=5)
        conn.request("GET", "/")
        time.sleep(0.1)
    assert time.monotonic() - start < 3
    release.set()
    conn.close()


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with serve_wsgi(echo, host="::1") as url:
        assert url.startswith("http://[::1]:")
        with urllib.request.urlopen(urllib.request.Request(url + "/x", data=b"6"), timeout=5) as response:
            assert response.read() == b"POST 6"
