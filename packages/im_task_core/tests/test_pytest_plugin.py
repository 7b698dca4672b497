"""im-task's pytest plugin (im_task.testing.plugin): its fixtures, their teardown, and the guard.

Each test writes a small test module, runs pytest on it in a subprocess with
``pytester`` and checks the outcomes. The plugin is found through the ``pytest11`` entry
point of the installed distribution, as in a user's project: nothing here
loads it by hand.
"""

from __future__ import annotations

import textwrap

import pytest

from im_task.state import STATE
from im_task.testing.plugin import GUARD_MESSAGE

pytest_plugins = ["pytester"]

FIXTURES = ("im_task_settings", "im_task_recorder", "im_task_immediate", "im_task_local_queue", "im_task_wsgi_app")

# A module the inner tests' tasks record into: importable by name, so tasks pickle it by reference.
SINK = """
import threading

calls = []
_lock = threading.Lock()


def record(item):
    with _lock:
        calls.append(item)
"""


def write(pytester: pytest.Pytester, source: str) -> None:
    pytester.makepyfile(sink=SINK, test_inner=textwrap.dedent(source))


def test_the_plugin_is_registered_by_the_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    assert result.ret == 0
    for name in FIXTURES:
        result.stdout.fnmatch_lines([f"{name}*"])
    disabled = pytester.runpytest_subprocess("--fixtures", "-p", "no:im_task", "-p", "no:cacheprovider")
    assert "im_task_settings" not in disabled.stdout.str()


def test_settings_are_isolated_configurable_and_put_back(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        pytester,
        """
        import os
        from pathlib import Path

        from im_task import configure
        from im_task.config import get_settings

        def test_outside_a_fixture_settings_come_from_the_environment():
            configure(default_queue="outer")
            assert os.environ["IM_TASK_ENVIRONMENT"] == "production"

        def test_inside(im_task_settings, tmp_path):
            assert "IM_TASK_ENVIRONMENT" not in os.environ
            settings = get_settings()
            assert settings.default_queue == "default"  # not "outer"
            assert settings.data_dir == im_task_settings.data_dir == tmp_path / "im_task"
            im_task_settings(default_queue="mail", secret="a-test-secret-of-32-or-more-bytes")
            assert get_settings().default_queue == "mail"

        def test_after():
            assert get_settings().default_queue == "outer"
            assert os.environ["IM_TASK_ENVIRONMENT"] == "production"
        """,
    )
    monkeypatch.setenv("IM_TASK_ENVIRONMENT", "production")
    monkeypatch.setenv("IM_TASK_SECRET", "an-environment-secret-0123456789")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_the_recorder_records_runs_and_is_closed_even_when_the_test_fails(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        """
        import pytest

        import sink
        from im_task import EnqueueError, task
        from im_task.runtime import get_transport
        from im_task.transports import TaskRequest

        SEEN = {}

        @task(queue="mail")
        def send(address):
            sink.record(address)

        def test_records_then_runs(im_task_recorder):
            assert get_transport() is im_task_recorder
            handle = send("ada@example.com")
            [request] = im_task_recorder.requests
            assert (request.queue, request.name) == ("mail", handle.name)
            assert sink.calls == []
            assert [response.status for response in im_task_recorder.run_all()] == [200]
            assert sink.calls == ["ada@example.com"]

        def test_fails(im_task_recorder):
            SEEN["recorder"] = im_task_recorder
            raise AssertionError("on purpose")

        def test_the_failed_tests_recorder_was_closed_and_uninstalled(im_task_settings):
            recorder = SEEN["recorder"]
            assert recorder.closed
            assert get_transport() is not recorder
            with pytest.raises(EnqueueError, match="closed"):
                recorder.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"x"))
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_fails*on purpose*"])


def test_immediate_runs_each_task_in_the_call(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        """
        import pytest

        import sink
        from im_task import task

        @task
        def double(value):
            if value < 0:
                raise ValueError("negative")
            sink.record(value * 2)

        def test_runs_at_once(im_task_immediate):
            double(21)
            assert sink.calls == [42]
            assert [status for _, status in im_task_immediate.responses] == [200]

        def test_the_task_exception_reaches_the_caller(im_task_immediate):
            with pytest.raises(ValueError, match="negative"):
                double(-1)
        """,
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


LOCAL_QUEUE_TESTS = """
import urllib.error
import urllib.request

import pytest

import sink
from im_task import EnqueueError, get_retry_count, task
from im_task.runtime import get_transport
from im_task.transports import LocalTransport, TaskRequest

SEEN = {}

@task
def flaky(value):
    sink.record((value, get_retry_count()))
    if get_retry_count() == 0:
        raise RuntimeError("first attempt fails")

def test_delivers_over_http_with_retries(im_task_local_queue, im_task_settings):
    assert im_task_local_queue.base_url.startswith("http://127.0.0.1:")
    assert isinstance(im_task_local_queue.transport, LocalTransport)
    assert get_transport() is im_task_local_queue.transport
    assert im_task_local_queue.transport.path.parent == im_task_settings.data_dir
    flaky("x")
    im_task_local_queue.join(scheduled=True)
    assert sink.calls == [("x", 0), ("x", 1)]
    assert im_task_local_queue.transport.stats().delivered == 1

def test_fails(im_task_local_queue):
    SEEN["queue"] = im_task_local_queue
    flaky("y")
    im_task_local_queue.join(scheduled=True)
    raise AssertionError("on purpose")

def test_the_failed_tests_queue_was_closed_and_its_server_stopped(im_task_settings):
    queue = SEEN["queue"]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(queue.base_url + "/_ah/task/m/f", timeout=5)
    with pytest.raises(EnqueueError, match="closed"):
        queue.transport.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"x"))
    assert get_transport() is not queue.transport
"""


def test_the_local_queue_delivers_over_http_and_is_torn_down_even_when_the_test_fails(
    pytester: pytest.Pytester,
) -> None:
    write(pytester, LOCAL_QUEUE_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_fails*on purpose*"])


def test_join_says_what_is_left_when_it_times_out(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        """
        import pytest

        from im_task import task

        @task(countdown=3600)
        def later():
            pass

        def test_join_times_out(im_task_local_queue):
            later()
            im_task_local_queue.join()  # nothing is due: returns at once
            with pytest.raises(TimeoutError, match=r"still had tasks to deliver after 0.2s: .*queued=1"):
                im_task_local_queue.join(timeout=0.2, scheduled=True)
        """,
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_served_app_can_be_overridden_with_a_fixture(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        """
        import urllib.request

        import pytest

        import sink
        from im_task import task
        from im_task.wsgi import TaskWSGIApp

        def hello(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"hello from my app"]

        @pytest.fixture
        def im_task_wsgi_app(im_task_settings):
            return TaskWSGIApp(fallback=hello)

        @task
        def note(text):
            sink.record(text)

        def test_my_app_is_served(im_task_local_queue):
            with urllib.request.urlopen(im_task_local_queue.base_url + "/hello", timeout=10) as response:
                assert response.read() == b"hello from my app"
            assert im_task_local_queue.app.fallback is hello
            note("delivered")
            im_task_local_queue.join()
            assert sink.calls == ["delivered"]
        """,
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


GUARDED_TESTS = """
import pytest

from im_task import ConfigurationError, task
from im_task.transports import LocalTransport

@task
def send(address):
    pass

def test_enqueueing_on_the_default_queue():
    send("ada@example.com")

def test_making_the_default_local_queue():
    LocalTransport()

def test_with_a_fixture_the_default_queue_is_in_the_temporary_data_dir(im_task_settings):
    send("ada@example.com")
"""


def test_outside_the_fixtures_the_working_directorys_queue_is_refused(pytester: pytest.Pytester) -> None:
    write(pytester, GUARDED_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    output = result.stdout.str()
    # counted in the tracebacks ("E   ..." lines): pytest repeats it in full in the summary when $CI is set
    errors = [line for line in result.stdout.lines if line.startswith("E ") and "This test would use the real" in line]
    assert len(errors) == 2
    for name in ("im_task_settings", "im_task_recorder", "im_task_immediate", "im_task_local_queue"):
        assert name in output
    assert not (pytester.path / ".im_task").exists()


def test_the_guard_is_put_back_after_the_session(pytester: pytest.Pytester) -> None:
    before = STATE.guard
    STATE.guard = None
    try:
        pytester.makepyfile(
            test_inner="""
            from im_task.state import STATE
            from im_task.testing.plugin import GUARD_MESSAGE

            def test_on():
                assert STATE.guard == GUARD_MESSAGE
            """
        )
        pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
        assert STATE.guard is None
    finally:
        STATE.guard = before


def test_the_guard_can_be_turned_off_in_the_configuration(pytester: pytest.Pytester) -> None:
    write(pytester, GUARDED_TESTS)
    pytester.makeini("[pytest]\nim_task_guard = false\n")
    # In a subprocess: without the guard the tasks go to a real local queue in the working directory.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert (pytester.path / ".im_task" / "queue.sqlite3").exists()


def test_the_guard_message_says_what_to_do() -> None:
    assert STATE.guard == GUARD_MESSAGE  # this very session runs under the plugin
    for name in ("im_task_settings", "im_task_recorder", "im_task_immediate", "im_task_local_queue"):
        assert name in GUARD_MESSAGE
    assert "isolated_settings(tmp_path)" in GUARD_MESSAGE
    assert "im_task_guard = false" in GUARD_MESSAGE
