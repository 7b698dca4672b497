"""LocalTransport durability and sharing: restarts, killed processes, leases, several dispatchers on one file."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from im_task_testsupport.processes import python_env, run_python
from im_task_testsupport.wsgi_apps import Recorder, request

from im_task.transports.local import LocalTransport
from im_task.transports.local.store import LostAttempt, TaskStore


def test_tasks_survive_a_restart(db: Path) -> None:
    transport = LocalTransport(db, autostart=False)
    names = [transport.enqueue(request(body=b"%d" % i)) for i in range(3)]
    transport.close()
    app = Recorder()
    with LocalTransport(db, target=app, autostart=False) as reopened:
        assert reopened.stats().queued == 3
        reopened.start()
        assert reopened.join(5)
    assert sorted(app.names()) == sorted(names)


def test_an_autostarting_transport_resumes_tasks_left_from_before(db: Path) -> None:
    with LocalTransport(db, autostart=False) as before:
        names = [before.enqueue(request(body=b"%d" % i)) for i in range(3)]
    app = Recorder()
    with LocalTransport(db, target=app) as reopened:  # nothing enqueued: the leftovers alone start it
        assert reopened.running
        assert reopened.join(5)
    assert sorted(app.names()) == sorted(names)


def test_an_autostarting_transport_on_an_empty_file_waits_for_the_first_task(db: Path) -> None:
    with LocalTransport(db) as transport:
        assert not transport.running
        transport.enqueue(request())
        assert transport.running


def test_tasks_survive_a_killed_process(db: Path) -> None:
    result = run_python(
        f"""
        import os
        from im_task.transports.base import TaskRequest
        from im_task.transports.local import LocalTransport
        t = LocalTransport({str(db)!r})  # autostart, but there is no target: nothing is delivered
        for i in range(3):
            print(t.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"x", name=f"killed-{{i}}")))
        os._exit(0)  # no close, no cleanup
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["killed-0", "killed-1", "killed-2"]
    app = Recorder()
    with LocalTransport(db, target=app) as transport:
        transport.start()
        assert transport.join(5)
    assert sorted(app.names()) == ["killed-0", "killed-1", "killed-2"]


def test_a_dispatcher_killed_mid_delivery_loses_its_lease(db: Path) -> None:
    # A process claims the task, enters the handler, and dies there.
    result = run_python(
        f"""
        import os
        from im_task.transports.base import TaskRequest
        from im_task.transports.local import LocalTransport
        def app(environ, start_response):
            os._exit(3)
        t = LocalTransport({str(db)!r}, target=app, lease_duration=0.5)
        t.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"x", name="orphan"))
        t.join(10)
        """
    )
    assert result.returncode == 3, result.stderr
    app = Recorder()
    with LocalTransport(db, target=app, autostart=False) as transport:
        (task,) = transport.tasks()
        assert (task.state, task.attempts) == ("running", 1)
        start = time.monotonic()
        transport.start()
        assert transport.join(10, scheduled=True)  # the lost attempt is retried after the policy's backoff
        assert time.monotonic() - start < 5
        (task,) = transport.tasks()
    assert (task.state, task.attempts) == ("done", 2)
    (call,) = app.calls
    headers = call["env"]
    assert headers["HTTP_X_APPENGINE_TASKNAME"] == "orphan"
    assert headers["HTTP_X_APPENGINE_TASKRETRYCOUNT"] == "1"
    assert headers["HTTP_X_APPENGINE_TASKRETRYREASON"] == "LEASE_EXPIRED"


def retry_now(lost: LostAttempt) -> float:
    return time.time()


def test_expired_lease_is_reclaimed_but_a_live_one_is_not(db: Path) -> None:
    with LocalTransport(db, autostart=False) as transport:
        transport.enqueue(request(name="expired"))
        transport.enqueue(request(name="live"))
    store = TaskStore(db)
    now = time.time()
    first = store.claim("dead-owner", 1, now=now, lease_until=now + 0.2, on_lost=retry_now)
    second = store.claim("live-owner", 1, now=now, lease_until=now + 60, on_lost=retry_now)
    assert [t.name for t in first + second] == ["expired", "live"]
    assert store.claim("someone", 10, now=time.time(), lease_until=time.time() + 60, on_lost=retry_now) == []
    app = Recorder()
    with LocalTransport(db, target=app) as transport:
        transport.start()
        deadline = time.monotonic() + 5
        while not app.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert app.names() == ["expired"]
        states = {t.name: t.state for t in transport.tasks()}
        assert states == {"expired": "done", "live": "running"}
    # the old holder's late report of its attempt is ignored: the task was claimed again since
    from im_task.transports.local.store import Settlement

    late = Settlement(first[0].id, first[0].attempt, "queued", time.time(), 500, "late", False, time.time())
    assert store.settle("dead-owner", [late]) == 0
    store.close()


def test_two_transports_on_one_file_deliver_each_task_once(db: Path) -> None:
    app = Recorder()
    with (
        LocalTransport(db, target=app, concurrency=4, poll_interval=0.05) as one,
        LocalTransport(db, target=app, concurrency=4, poll_interval=0.05) as two,
    ):
        for i in range(150):
            (one if i % 2 else two).enqueue(request(name=f"t{i}"))
        assert one.join(20)
        assert two.join(20)
        delivered_by = (one.stats().delivered, two.stats().delivered)
    counts = collections.Counter(app.names())
    assert sorted(counts) == sorted(f"t{i}" for i in range(150))
    assert set(counts.values()) == {1}
    assert sum(delivered_by) == 150


def test_a_transport_delivers_what_another_process_enqueues(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app, poll_interval=0.1) as transport:
        transport.start()
        result = run_python(
            f"""
            from im_task.transports.base import TaskRequest
            from im_task.transports.local import LocalTransport
            with LocalTransport({str(db)!r}, autostart=False) as t:
                t.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"x", name="from-afar"))
            """
        )
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 5
        while not app.calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert transport.join(5)
    assert app.names() == ["from-afar"]


def test_wal_mode(db: Path) -> None:
    with LocalTransport(db, autostart=False):
        import sqlite3

        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_gets_its_own_connection_and_dispatcher(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app) as transport:
        transport.enqueue(request(name="parent-1"))
        assert transport.join(5)
        transport.stop()  # after a stop, enqueue starts nothing here: only the reset after fork() starts the child's
        pid = os.fork()
        if pid == 0:  # the child: enqueue and deliver through the inherited transport object
            code = 1
            try:
                transport.enqueue(request(name="child-1"))
                code = 0 if transport.join(5) and transport.stats().delivered == 1 else 2
                transport.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        transport.start()
        transport.enqueue(request(name="parent-2"))
        assert transport.join(5)
        assert transport.stats().delivered == 2
        assert {t.name: t.state for t in transport.tasks()} == {
            "parent-1": "done",
            "child-1": "done",
            "parent-2": "done",
        }


def test_a_file_from_a_newer_version_is_refused(db: Path) -> None:
    import sqlite3

    from im_task.errors import ConfigurationError

    LocalTransport(db, autostart=False).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(ConfigurationError, match="newer im-task"):
        LocalTransport(db, autostart=False)


def test_processes_enqueueing_into_one_file_at_once_lose_no_task_and_share_no_name(db: Path) -> None:
    # An unnamed task is stored by one statement, its own transaction: it must still take the write lock before it
    # reads the id floor, or two processes would give two tasks one id (and one of them would be lost).
    LocalTransport(db, autostart=False).close()  # the file exists before the processes race for it
    code = f"""
        import sys, time
        from im_task.transports.base import TaskRequest
        from im_task.transports.local import LocalTransport
        start = float(sys.argv[1])
        with LocalTransport({str(db)!r}, autostart=False) as t:
            while time.time() < start:
                time.sleep(0.001)
            names = [t.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"%d" % i)) for i in range(400)]
        print(" ".join(names))
        """
    start = time.time() + 1.5
    children = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=python_env(),
        )
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0, 0, 0], [err for _, err in outputs]
    names = [name for out, _ in outputs for name in out.split()]
    assert len(names) == 1600
    assert len(set(names)) == 1600
    with LocalTransport(db, autostart=False) as transport:
        assert transport.stats().queued == 1600
