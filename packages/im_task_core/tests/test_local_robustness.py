"""The local queue under stress: fork(), tasks that kill their process or stop their queue, sharing, join()."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport.processes import run_python
from im_task_testsupport.wsgi_apps import request

from im_task import config, local_target, runtime
from im_task.errors import EnqueueError, Error
from im_task.headers import forwardable_headers
from im_task.retry import RetryPolicy
from im_task.transports.base import TaskRequest
from im_task.transports.local import LocalTransport
from im_task.transports.local.store import LEASE_EXPIRED, LostAttempt, NewTask, TaskStore

NO_BACKOFF = RetryPolicy(max_attempts=5, min_backoff=0, max_backoff=0)


class Gate:
    """A WSGI app that records each request and, while ``hold`` is set, waits for ``release``."""

    def __init__(self, *, hold: bool = False, then: Callable[[], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.hold = hold
        self.release = threading.Event()
        self.then = then
        self.done = threading.Event()
        self.error: BaseException | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            self.calls.append(environ)
        if self.hold:
            self.release.wait(30)
        if self.then is not None:
            try:
                self.then()
            except BaseException as exc:
                self.error = exc
            self.done.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def count(self) -> int:
        with self.lock:
            return len(self.calls)

    def names(self) -> list[str]:
        with self.lock:
            return [c["HTTP_X_APPENGINE_TASKNAME"] for c in self.calls]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def is_closed(transport: LocalTransport) -> bool:
    try:
        transport.stats()
    except Error as exc:
        return "closed" in str(exc)
    return False


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Runs ``call`` on a daemon thread; its result lands in the returned list."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


def wait_child(pid: int, timeout: float = 20.0) -> int | None:
    """The exit code of a forked child, or None if it had not ended within ``timeout`` (it is killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def die_delivering(db: Path, name: str = "poison", *, enqueue: bool = True) -> None:
    """In another process: claim the task (enqueueing it first), and die in the middle of delivering it."""
    result = run_python(
        f"""
        import os
        from im_task.retry import RetryPolicy
        from im_task.transports.base import TaskRequest
        from im_task.transports.local import LocalTransport
        def app(environ, start_response):
            os._exit(3)
        t = LocalTransport({str(db)!r}, target=app, lease_duration=0.3, default_policy=RetryPolicy(max_attempts=2,
                           min_backoff=0, max_backoff=0), autostart={not enqueue})
        if {enqueue}:
            t.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"x", name={name!r}))
        t.start()
        t.join(30)
        """
    )
    assert result.returncode == 3, result.stderr


# -- fork() ------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads running
def test_a_child_forked_in_the_middle_of_a_transaction_can_still_write(db: Path) -> None:
    with LocalTransport(db, autostart=False) as transport:
        transport.enqueue(request("stale"))
    store = TaskStore(db)
    try:
        now = time.time()
        assert store.claim("dead", 1, now=now, lease_until=now, on_lost=lambda lost: None)  # a lease run out
        inside, forked = threading.Event(), threading.Event()

        def slow_policy(lost: LostAttempt) -> float:  # runs inside claim()'s write transaction
            inside.set()
            forked.wait(0.5)  # fork() is called meanwhile: it must wait for this transaction to end
            return time.time()

        claimer, _ = in_thread(lambda: store.claim("me", 1, now=time.time(), lease_until=0, on_lost=slow_policy))
        assert inside.wait(10)
        pid = os.fork()
        if pid == 0:  # the child: writes through a new connection, with a short busy timeout
            code = 1
            try:
                child_store = TaskStore(db, busy_timeout=2.0)
                child_store.add(
                    NewTask("default", "child", "/x", {}, b"", time.time(), None, None),
                    now=time.time(),
                    name_retention=0,
                )
                child_store.close()
                code = 0
            except BaseException as exc:  # reported through the exit code
                print(f"child failed: {exc!r}", file=sys.stderr, flush=True)
                code = 2
            finally:
                os._exit(code)
        forked.set()
        claimer.join(10)
        assert wait_child(pid) == 0, "the forked child was locked out of the queue file"
    finally:
        store.close()
    with LocalTransport(db, autostart=False) as check:
        assert "child" in {t.name for t in check.tasks()}, "the forked child was locked out of the queue file"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads running
def test_children_forked_while_the_parent_enqueues_keep_writing(db: Path) -> None:
    # No dispatcher: a child leaving with os._exit() would leave the tasks it claimed to lease expiry.
    with LocalTransport(db, autostart=False) as transport:
        stop = threading.Event()

        def produce() -> None:
            i = 0
            while not stop.is_set():
                transport.enqueue(request(f"parent-{i}"))
                i += 1

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            for k in range(5):
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        for j in range(5):
                            transport.enqueue(request(f"child-{k}-{j}"))
                        code = 0
                    finally:
                        os._exit(code)
                assert wait_child(pid) == 0, f"forked child {k} was locked out of the queue file"
        finally:
            stop.set()
            producer.join(10)
        names = {t.name for t in transport.tasks(limit=1_000_000)}
    assert {f"child-{k}-{j}" for k in range(5) for j in range(5)} <= names


# -- stopping from inside a task --------------------------------------------------------


def test_close_from_inside_a_task_returns_and_records_the_task(db: Path) -> None:
    app = Gate()
    transport = LocalTransport(db, target=app)
    app.then = transport.close
    transport.enqueue(request("closer"))
    assert app.done.wait(10), "close() called by a task waited for that task to end"
    assert app.error is None
    with pytest.raises(EnqueueError, match="closed"):
        transport.enqueue(request())
    assert wait_for(lambda: is_closed(transport))  # once the delivery is recorded
    with LocalTransport(db, autostart=False) as reopened:
        assert [(t.name, t.state, t.attempts) for t in reopened.tasks()] == [("closer", "done", 1)]


def test_stop_from_inside_a_task_returns_at_once(db: Path) -> None:
    returned: list[bool] = []
    app = Gate()
    with LocalTransport(db, target=app) as transport:
        app.then = lambda: returned.append(transport.stop())
        transport.enqueue(request("stopper"))
        assert app.done.wait(10), "stop() called by a task waited for that task to end"
        assert returned == [False]  # its own delivery was still in flight
        assert not transport.running
        assert wait_for(lambda: [(t.name, t.state) for t in transport.tasks()] == [("stopper", "done")])
        transport.enqueue(request("after"))  # stopped: not delivered until started again
        assert not transport.running
        transport.start()
        assert transport.join(10)
    assert app.names() == ["stopper", "after"]


def test_join_from_inside_a_task_raises_instead_of_waiting_for_itself(db: Path) -> None:
    app = Gate()
    with LocalTransport(db, target=app) as transport:
        app.then = lambda: transport.join(5)
        transport.enqueue(request())
        assert app.done.wait(10)
        assert isinstance(app.error, Error)
        assert "would wait for that very task" in str(app.error)


def test_configure_from_inside_a_task_closes_the_owned_transport_after_it(tmp_path: Path) -> None:
    config.configure(data_dir=tmp_path)  # the default transport: a LocalTransport that configure() owns
    outcome: list[BaseException | None] = []

    def reconfigure() -> None:
        try:
            config.configure(transport="recording")  # closes the owned transport, which delivers this very task
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    app = Gate(then=reconfigure)
    local_target.register_local_target(app)
    transport = runtime.get_transport()
    assert isinstance(transport, LocalTransport)
    transport.enqueue(request("reconfigure"))
    assert app.done.wait(10), "configure() from inside a task deadlocked"
    assert outcome == [None]
    assert wait_for(lambda: is_closed(transport))
    with LocalTransport(transport.path, autostart=False) as reopened:
        assert [(t.name, t.state) for t in reopened.tasks()] == [("reconfigure", "done")]


# -- tasks that kill their process -------------------------------------------------------


def test_a_task_that_kills_its_process_keeps_to_the_retry_policy(db: Path) -> None:
    die_delivering(db)  # attempt 1: the process dies
    time.sleep(0.4)  # its lease (0.3 s) runs out
    die_delivering(db, enqueue=False)  # the lost attempt is retried (max_attempts=2): attempt 2 dies too
    time.sleep(0.4)
    app = Gate()
    policy = RetryPolicy(max_attempts=2, min_backoff=0, max_backoff=0)
    with LocalTransport(db, target=app, default_policy=policy, autostart=False, poll_interval=0.05) as transport:
        (task,) = transport.tasks()
        assert (task.state, task.attempts) == ("running", 2)
        transport.start()
        assert wait_for(lambda: transport.tasks()[0].state != "running")
        assert transport.join(10, scheduled=True)
        (task,) = transport.tasks()
        assert (task.state, task.attempts, task.last_error) == ("gave-up", 2, LEASE_EXPIRED)
        assert task.finished is not None
        assert transport.stats().given_up == 1
    assert app.count() == 0  # given up on: never delivered a third time


def test_a_lost_attempt_waits_out_the_backoff(db: Path) -> None:
    die_delivering(db, "orphan")
    time.sleep(0.4)
    app = Gate()
    policy = RetryPolicy(min_backoff=60, max_backoff=60)
    with LocalTransport(db, target=app, default_policy=policy, poll_interval=0.05) as transport:
        assert transport.running  # resumed the leftover task
        assert wait_for(lambda: transport.tasks()[0].state == "queued")
        (task,) = transport.tasks()
        assert (task.attempts, task.last_status, task.last_error) == (1, None, LEASE_EXPIRED)
        assert task.due > dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=50)
        assert transport.stats().retried == 1
        assert transport.join(1)  # nothing due
    assert app.count() == 0


def test_expired_leases_are_settled_even_behind_a_backlog(db: Path) -> None:
    die_delivering(db, "orphan")
    app = Gate(hold=True)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    with LocalTransport(db, target=app, autostart=False, concurrency=1, poll_interval=0.05) as transport:
        for i in range(20):
            transport.enqueue(request(f"backlog-{i}", schedule_time=past))
        time.sleep(0.4)  # the orphan's lease runs out
        transport.start()
        try:
            assert wait_for(lambda: app.count() == 1)  # the oldest backlog task holds the only worker
            states = {t.name: (t.state, t.last_error) for t in transport.tasks(limit=100)}
            assert states["orphan"] == ("queued", LEASE_EXPIRED)
        finally:
            app.release.set()
        assert transport.join(30, scheduled=True)
    assert app.names()[0] == "backlog-0"
    assert app.names()[-1] == "orphan"  # due after its backoff: behind the older backlog


def test_claim_takes_the_oldest_due_first(db: Path) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    ages = [5, 50, 1, 500, 20]
    app = Gate()
    with LocalTransport(db, target=app, autostart=False, concurrency=1) as transport:
        for age in ages:
            transport.enqueue(request(f"age-{age}", schedule_time=now - dt.timedelta(seconds=age)))
        transport.start()
        assert transport.join(10)
    assert app.names() == [f"age-{age}" for age in sorted(ages, reverse=True)]


# -- sharing the file ----------------------------------------------------------------------


def test_a_dispatcher_claims_only_what_its_workers_can_start(db: Path) -> None:
    first, second = Gate(hold=True), Gate(hold=True)
    with (
        LocalTransport(db, target=first, concurrency=2, poll_interval=0.05) as one,
        LocalTransport(db, target=second, concurrency=2, autostart=False, poll_interval=0.05) as two,
    ):
        try:
            for i in range(10):
                one.enqueue(request(f"t{i}"))
            assert wait_for(lambda: first.count() == 2)
            stats = one.stats()
            assert (stats.running, stats.queued) == (2, 8)  # no backlog hoarded
            assert {t.attempts for t in one.tasks(state="queued")} == {0}  # no attempt counted before it starts
            two.start()
            assert wait_for(lambda: second.count() == 2), "the second dispatcher found nothing left to claim"
        finally:
            first.release.set()
            second.release.set()
        assert one.join(20)
        assert two.join(20)
    assert sorted(first.names() + second.names()) == sorted(f"t{i}" for i in range(10))
    assert second.count() >= 2


def test_stop_waits_only_for_the_deliveries_started(db: Path) -> None:
    app = Gate(hold=True)
    transport = LocalTransport(db, target=app, concurrency=1)
    try:
        for i in range(5):
            transport.enqueue(request(f"t{i}"))
        assert wait_for(lambda: app.count() == 1)
        stopper, result = in_thread(transport.stop)
        time.sleep(0.1)
        app.release.set()
        stopper.join(10)
        assert result == [True]
        assert app.count() == 1
        states = sorted((t.state, t.attempts) for t in transport.tasks())
        assert states == [("done", 1)] + [("queued", 0)] * 4  # the others were never claimed
        transport.start()
        assert transport.join(10)
        assert {t.attempts for t in transport.tasks()} == {1}
    finally:
        transport.close()


def test_tasks_claimed_after_a_stop_ran_out_of_time_are_given_back_unattempted(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by review: stop(timeout) ran out while a turn waited for the write lock (held by another process);
    # the turn then claimed a task no worker could start, charged it an attempt and kept it in flight.
    app = Gate(hold=True)
    transport = LocalTransport(db, target=app, concurrency=1, lease_duration=3.0, poll_interval=5.0)
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        for i in range(3):
            transport.enqueue(request(f"t{i}"))
        assert wait_for(lambda: app.count() == 1)
        blocker.execute("BEGIN IMMEDIATE")  # another process's long write: the next turn waits for it
        app.release.set()  # the delivery ends; its worker's turn now waits to record it and claim t1
        time.sleep(0.3)
        dispatcher = transport._dispatcher
        assert dispatcher is not None
        with caplog.at_level(logging.WARNING, logger="im_task"):
            assert transport.stop(timeout=0.2) is False
            blocker.execute("COMMIT")
            assert wait_for(lambda: dispatcher.in_flight == 0 and not dispatcher.alive)
        states = sorted((t.name, t.state, t.attempts) for t in transport.tasks())
        assert states == [("t0", "done", 1), ("t1", "queued", 0), ("t2", "queued", 0)]
        assert "they are given back, not attempted" in caplog.text
    finally:
        blocker.close()
        transport.close()


# -- join() when nothing delivers ------------------------------------------------------------


def test_join_does_not_wait_for_a_dispatcher_that_was_never_started(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    with LocalTransport(db, target=Gate(), autostart=False, poll_interval=0.1) as transport:
        transport.enqueue(request())
        thread, result = in_thread(transport.join)
        thread.join(10)
        assert result == [False], "join() without a timeout waited for a dispatcher that is not running"
        assert "nothing delivers them" in caplog.text
        assert transport.join(0.5, scheduled=True) is False


def test_join_does_not_wait_after_stop(db: Path) -> None:
    app = Gate()
    with LocalTransport(db, target=app, poll_interval=0.1) as transport:
        transport.enqueue(request("one"))
        assert transport.join(10)
        transport.stop()
        transport.enqueue(request("two"))
        thread, result = in_thread(transport.join)
        thread.join(10)
        assert result == [False]
        transport.start()
        assert transport.join(10)
    assert app.names() == ["one", "two"]


def test_join_waits_while_another_dispatcher_delivers(db: Path) -> None:
    app = Gate(hold=True)
    with (
        LocalTransport(db, target=app, poll_interval=0.05) as worker,
        LocalTransport(db, autostart=False, poll_interval=0.05) as watcher,
    ):
        worker.enqueue(request())
        assert wait_for(lambda: app.count() == 1)
        thread, result = in_thread(watcher.join)
        thread.join(0.5)  # ten times the watcher's poll interval
        assert thread.is_alive()  # another dispatcher holds a lease: it waits
        app.release.set()
        thread.join(10)
        assert result == [True]


def test_join_without_a_timeout_says_why_it_waits_for_a_target(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="im_task")
    with LocalTransport(db, poll_interval=0.05) as transport:  # no target: the registered app, when there is one
        transport.enqueue(request())
        thread, result = in_thread(transport.join)
        assert wait_for(lambda: "join() waits for tasks the local queue cannot deliver" in caplog.text)
        assert thread.is_alive()
        app = Gate()
        local_target.register_local_target(app)
        thread.join(10)
        assert result == [True]
    assert app.count() == 1


# -- names and headers ----------------------------------------------------------------------


@pytest.mark.parametrize("queue", ["with.dot", "with_underscore", "", "x" * 101])
def test_queue_names_follow_cloud_tasks(db: Path, queue: str) -> None:
    with LocalTransport(db, autostart=False) as transport, pytest.raises(EnqueueError, match="queue name"):
        transport.enqueue(TaskRequest(queue=queue, url="/x", body=b""))


def test_reserved_headers_are_dropped_whatever_their_spelling() -> None:
    headers = {
        "X_AppEngine_TaskRetryCount": "0",
        "x-appengine-taskname": "forged",
        "X-CloudTasks-QueueName": "forged",
        "X_CloudTasks_TaskRetryCount": "0",
        "X-Google-Internal": "1",
        "Content_Length": "5",
        "Host": "evil",
        "X-Custom": "kept",
        "X_Custom_Too": "kept",
    }
    assert forwardable_headers(headers) == {"X-Custom": "kept", "X_Custom_Too": "kept"}


def test_an_underscore_alias_cannot_shadow_the_retry_count(db: Path) -> None:
    app = Gate()
    statuses = iter([500, 200])

    def flaky(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        app(environ, lambda *a: None)
        start_response(f"{next(statuses)} X", [])
        return [b""]

    headers = {"X_AppEngine_TaskRetryCount": "0", "X_CloudTasks_TaskRetryCount": "0"}
    with LocalTransport(db, target=flaky, default_policy=NO_BACKOFF) as transport:
        transport.enqueue(TaskRequest(queue="default", url="/x", body=b"", headers=headers))
        assert transport.join(10, scheduled=True)
    assert [c["HTTP_X_APPENGINE_TASKRETRYCOUNT"] for c in app.calls] == ["0", "1"]
    assert all("HTTP_X_CLOUDTASKS_TASKRETRYCOUNT" not in c for c in app.calls)
