"""LocalTransport: enqueue contract, names, size, scheduling, join, close, inspection."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from im_task_testsupport.wsgi_apps import Recorder, request

from im_task import config, local_target
from im_task.errors import ConfigurationError, EnqueueError, Error, TaskAlreadyExistsError, TaskTooLargeError
from im_task.retry import RetryPolicy
from im_task.transports.base import task_size
from im_task.transports.local import LocalTransport, QueueStats

FAST = RetryPolicy(max_attempts=3, min_backoff=0.01, max_backoff=0.05)


def test_enqueue_delivers_in_process_and_returns_generated_names(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app) as transport:
        names = [transport.enqueue(request(body=b"%d" % i)) for i in range(5)]
        assert transport.join(5)
        assert len(set(names)) == 5
        for name in names:
            assert name
            assert all(c.isalnum() or c in "-_" for c in name)
        assert sorted(app.names()) == sorted(names)
        assert sorted(c["body"] for c in app.calls) == [b"0", b"1", b"2", b"3", b"4"]
        stats = transport.stats()
        assert (stats.queued, stats.running, stats.done, stats.failed, stats.delivered) == (0, 0, 5, 0, 5)


def test_enqueue_returns_given_name_and_commits_before_returning(db: Path) -> None:
    with LocalTransport(db, autostart=False) as transport:
        assert transport.enqueue(request(name="my-task_1")) == "my-task_1"
        # a second connection sees it at once: it is committed
        with LocalTransport(db, autostart=False) as other:
            assert [t.name for t in other.tasks()] == ["my-task_1"]


def test_default_path_comes_from_settings(tmp_path: Path) -> None:
    config.configure(data_dir=tmp_path / "data")
    try:
        with LocalTransport(autostart=False) as transport:
            assert transport.path == tmp_path / "data" / "queue.sqlite3"
            assert transport.path.exists()
    finally:
        config.reset()


def test_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "q.sqlite3"
    with LocalTransport(path, autostart=False):
        assert path.exists()


def test_name_reuse_refused_while_queued_and_per_queue(db: Path) -> None:
    with LocalTransport(db, autostart=False) as transport:
        transport.enqueue(request(name="once"))
        with pytest.raises(TaskAlreadyExistsError, match="once"):
            transport.enqueue(request(name="once"))
        # the same name on another queue is another task
        assert transport.enqueue(request(name="once", queue="other")) == "once"


def test_name_reuse_refused_until_retention_passed(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app, name_retention=0.5) as transport:
        transport.enqueue(request(name="daily"))
        assert transport.join(5)
        with pytest.raises(TaskAlreadyExistsError, match=r"names stay taken 0\.5 s after"):
            transport.enqueue(request(name="daily"))
        time.sleep(0.6)
        assert transport.enqueue(request(name="daily")) == "daily"
        assert transport.join(5)
        assert app.names() == ["daily", "daily"]


def test_failed_task_name_is_also_retained(db: Path) -> None:
    app = Recorder(statuses=[500])
    policy = RetryPolicy(max_attempts=1)
    with LocalTransport(db, target=app, default_policy=policy, name_retention=60) as transport:
        transport.enqueue(request(name="x"))
        assert transport.join(5)
        assert transport.tasks()[0].state == "gave-up"
        with pytest.raises(TaskAlreadyExistsError):
            transport.enqueue(request(name="x"))


def test_name_reuse_error_is_an_enqueue_error(db: Path) -> None:
    assert issubclass(TaskAlreadyExistsError, EnqueueError)


@pytest.mark.parametrize("name", ["", "has space", "slash/", "é", "x" * 501])
def test_bad_names_are_refused(db: Path, name: str) -> None:
    with LocalTransport(db, autostart=False) as transport, pytest.raises(EnqueueError, match="Bad task name"):
        transport.enqueue(request(name=name))


def test_bad_queue_and_url_are_refused(db: Path) -> None:
    with LocalTransport(db, autostart=False) as transport:
        with pytest.raises(EnqueueError, match="queue name"):
            transport.enqueue(request(queue="a queue"))
        with pytest.raises(EnqueueError, match="starting with '/'"):
            transport.enqueue(request(url="http://elsewhere/x"))
        with pytest.raises(EnqueueError, match="TaskRequest"):
            transport.enqueue("not a request")  # type: ignore[arg-type]


def test_size_limit(db: Path) -> None:
    with LocalTransport(db, autostart=False, max_task_size=1000) as transport:
        small = request(body=b"x" * 100)
        assert task_size(small) <= 1000
        transport.enqueue(small)
        big = request(body=b"x" * 1000)
        size = task_size(big)
        with pytest.raises(TaskTooLargeError) as info:
            transport.enqueue(big)
        message = str(info.value)
        assert str(size) in message
        assert "1000" in message
        assert "send less data with the task" in message
        assert len(transport.tasks()) == 1


def test_default_size_limit_is_100_kib(db: Path) -> None:
    with LocalTransport(db, autostart=False) as transport:
        assert transport.max_task_size == 100 * 1024
        with pytest.raises(TaskTooLargeError, match="102400"):
            transport.enqueue(request(body=b"x" * 100 * 1024))


def test_countdown_eta_is_honoured(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app) as transport:
        eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=0.4)
        start = time.monotonic()
        transport.enqueue(request(schedule_time=eta))
        transport.enqueue(request(body=b"now"))
        # nothing due or running once the immediate task is done, though one is scheduled
        assert transport.join(5)
        assert [c["body"] for c in app.calls] == [b"now"]
        assert transport.stats().queued == 1
        assert transport.join(5, scheduled=True)
        assert len(app.calls) == 2
        assert app.calls[1]["time"] - start >= 0.38
        header = float(app.calls[1]["env"]["HTTP_X_APPENGINE_TASKETA"])
        assert header == pytest.approx(eta.timestamp(), abs=1e-5)


def test_eta_in_the_past_runs_at_once(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app) as transport:
        transport.enqueue(request(schedule_time=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)))
        assert transport.join(5)
        assert len(app.calls) == 1


def test_join_semantics(db: Path) -> None:
    app = Recorder(delay=0.3, record_after_delay=True)
    with LocalTransport(db, target=app, autostart=False) as transport:
        assert transport.join(0) is True  # nothing at all
        transport.enqueue(request())
        start = time.monotonic()
        assert transport.join(0.2) is False  # due, but nobody delivers
        assert 0.19 <= time.monotonic() - start < 1.5
        transport.start()
        assert transport.join(5) is True  # waits for the running delivery to be recorded
        assert transport.stats().done == 1
        assert len(app.calls) == 1


def test_join_scheduled_waits_for_retries(db: Path) -> None:
    app = Recorder(statuses=[500])
    policy = RetryPolicy(min_backoff=0.3, max_backoff=0.3)
    with LocalTransport(db, target=app, default_policy=policy) as transport:
        transport.enqueue(request())
        assert transport.join(5)  # the retry is not due yet
        assert transport.stats().queued == 1
        assert transport.join(5, scheduled=True)
        assert transport.stats().done == 1
        assert len(app.calls) == 2


def test_close_is_idempotent_and_enqueue_after_close_fails(db: Path) -> None:
    transport = LocalTransport(db, target=Recorder())
    transport.enqueue(request())
    transport.close()
    transport.close()
    with pytest.raises(EnqueueError, match="closed"):
        transport.enqueue(request())
    with pytest.raises(EnqueueError):
        transport.start()
    with pytest.raises(Error, match="closed"):
        transport.stats()
    assert transport.join(0.1) is True  # nothing more will happen here


def test_close_lets_in_flight_deliveries_finish(db: Path) -> None:
    app = Recorder(delay=0.3, record_after_delay=True)
    transport = LocalTransport(db, target=app)
    transport.enqueue(request())
    assert app.entered.wait(5)
    transport.close()
    assert len(app.calls) == 1
    with LocalTransport(db, autostart=False) as reopened:
        assert [t.state for t in reopened.tasks()] == ["done"]


def test_stop_then_enqueue_does_not_restart(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app) as transport:
        transport.enqueue(request())
        assert transport.join(5)
        assert transport.stop() is True
        assert not transport.running
        transport.enqueue(request())
        time.sleep(0.1)
        assert len(app.calls) == 1
        transport.start()
        assert transport.running
        assert transport.join(5)
        assert len(app.calls) == 2


def test_autostart_false_waits_for_start(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app, autostart=False) as transport:
        transport.enqueue(request())
        time.sleep(0.1)
        assert app.calls == []
        assert not transport.running
        transport.start()
        transport.start()  # starting twice is harmless
        assert transport.join(5)
        assert len(app.calls) == 1


def test_registered_local_target_is_used_and_looked_up_late(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = Recorder()
    local_target.register_local_target(None)
    try:
        with LocalTransport(db, poll_interval=0.1) as transport:
            with caplog.at_level(logging.WARNING, logger="im_task.local"):
                transport.enqueue(request())
                transport.enqueue(request())
                time.sleep(0.3)
            warnings = [r for r in caplog.records if "no target" in r.getMessage()]
            assert len(warnings) == 1
            assert transport.stats().queued == 2
            local_target.register_local_target(app)
            assert transport.join(5)
            assert len(app.calls) == 2
    finally:
        local_target.register_local_target(None)


def test_stats_tasks_and_purge(db: Path) -> None:
    with LocalTransport(db, autostart=False) as transport:
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
        transport.enqueue(request(name="a"))
        transport.enqueue(request(name="b", queue="mail", schedule_time=later))
        transport.enqueue(request(name="c", queue="mail"))
        stats = transport.stats()
        assert isinstance(stats, QueueStats)
        assert (stats.queued, stats.due, stats.running, stats.done, stats.failed) == (3, 2, 0, 0, 0)
        assert transport.stats(queue="mail").queued == 2
        listed = transport.tasks()
        assert [t.name for t in listed] == ["a", "c", "b"]  # by due time
        assert listed[2].due == later
        assert listed[0].size == len(b"payload")
        assert listed[0].attempts == 0
        assert [t.name for t in transport.tasks(queue="mail")] == ["c", "b"]
        assert [t.name for t in transport.tasks(limit=1)] == ["a"]
        assert transport.tasks(state="done") == []
        with pytest.raises(ConfigurationError):
            transport.tasks(state="bogus")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            transport.purge(states=["running"])
        assert transport.purge(queue="mail") == 2
        assert [t.name for t in transport.tasks()] == ["a"]
        # purged names are free again
        transport.enqueue(request(name="b", queue="mail"))
        assert transport.purge() == 2
        assert transport.stats().queued == 0


def test_purge_finished_tasks(db: Path) -> None:
    app = Recorder(statuses={"bad": 500})  # by name: the two tasks are delivered concurrently
    with LocalTransport(db, target=app, default_policy=RetryPolicy(max_attempts=1)) as transport:
        transport.enqueue(request(name="bad"))
        transport.enqueue(request(name="good"))
        assert transport.join(5)
        assert transport.purge() == 0
        assert transport.purge(states=("gave-up",)) == 1
        assert [t.name for t in transport.tasks()] == ["good"]
        assert transport.purge(states=("done",)) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"concurrency": 1.5},
        {"dispatch_deadline": 0},
        {"max_task_size": -1},
        {"name_retention": -1},
        {"target": 42},
        {"target": "ftp://host"},
        {"target": "not a url"},
        {"queues": {"q": {"max_attempts": 3}}},
        {"default_policy": None},
    ],
)
def test_bad_arguments(db: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        LocalTransport(db, autostart=False, **kwargs)


def test_enqueue_is_thread_safe(db: Path) -> None:
    app = Recorder()
    with LocalTransport(db, target=app) as transport:
        errors: list[BaseException] = []

        def producer(n: int) -> None:
            try:
                for i in range(25):
                    transport.enqueue(request(name=f"t{n}-{i}"))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert transport.join(10)
        assert sorted(app.names()) == sorted(f"t{n}-{i}" for n in range(8) for i in range(25))


def test_delivered_bodies_are_dropped(db: Path) -> None:
    with LocalTransport(db, target=Recorder()) as transport:
        transport.enqueue(request(body=b"x" * 5000))
        assert transport.join(5)
        assert transport.tasks()[0].size == 0


def test_done_tasks_are_pruned_after_retention(db: Path) -> None:
    with LocalTransport(db, target=Recorder(), name_retention=0.0) as transport:
        transport.enqueue(request())
        assert transport.join(5)
    with LocalTransport(db, target=Recorder(), name_retention=0.0) as transport:
        transport.start()  # housekeeping runs when the dispatcher starts
        deadline = time.monotonic() + 5
        while transport.stats().done and time.monotonic() < deadline:
            time.sleep(0.01)
        assert transport.stats().done == 0


def test_repr(db: Path) -> None:
    with LocalTransport(db, target="http://127.0.0.1:9", autostart=False) as transport:
        assert "127.0.0.1:9" in repr(transport)


def test_no_warning_without_tasks(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    local_target.register_local_target(None)
    with caplog.at_level(logging.WARNING, logger="im_task.local"), LocalTransport(db, poll_interval=0.05) as t:
        t.start()
        time.sleep(0.2)
    assert not [r for r in caplog.records if r.name == "im_task.local"]
