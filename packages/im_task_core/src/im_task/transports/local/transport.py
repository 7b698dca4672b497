"""``LocalTransport``: the embedded, durable queue that behaves like Cloud Tasks."""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from im_task.deadletter import DeadLetterStore
from im_task.deliveryproof import KeyringSource, check_keyring_source, signing_keyring
from im_task.errors import ConfigurationError, EnqueueError, Error
from im_task.keys import Keyring
from im_task.names import QUEUE_FILE
from im_task.retry import RetryPolicy
from im_task.state import STATE
from im_task.transports.base import (
    INLINE_TASK_LIMIT,
    TaskRequest,
    Transport,
    check_open,
    check_request,
    request_of,
)
from im_task.transports.local.delivery import Deliverer, HTTPDelivery, WSGIDelivery
from im_task.transports.local.dispatcher import Counters, Dispatcher, current_dispatcher
from im_task.transports.local.models import (
    FINISHED_STATES,
    STATES,
    QueueLimits,
    QueueStats,
    TaskDetail,
    TaskInfo,
    TaskState,
)
from im_task.transports.local.store import NewTask, TaskStore, corruption_message, is_corrupt

__all__ = ["LocalTransport"]

logger = logging.getLogger("im_task.local")

WSGIApp = Callable[..., Any]
_JOIN_POLL = 0.05
_EXIT_TIMEOUT = 2.0
_T = TypeVar("_T")
_live: weakref.WeakSet[LocalTransport] = weakref.WeakSet()


class LocalTransport(Transport):
    """A durable queue in a SQLite file, delivering tasks like Google Cloud Tasks.

    Tasks are committed to the file before :meth:`enqueue` returns, so they
    survive a restart or a crash. A dispatcher thread (started on the first
    enqueue, or by :meth:`start`) POSTs due tasks to the target, several at a
    time, with the ``X-AppEngine-*`` task headers; any answer but a 2xx, a
    connection failure, or no answer within the dispatch deadline is retried
    with exponential backoff until the queue's retry policy gives up. Several
    transports and ``im-task worker`` processes may share one file: each task
    is leased to one of them at a time.

    Args:
        path: The SQLite file; defaults to ``queue.sqlite3`` in the configured
            ``data_dir``. Parent directories are created.
        target: Where tasks go: a WSGI application (called in process), a base
            URL such as ``"http://127.0.0.1:8000"`` (the task's path is
            appended), or None for the application an adapter registered,
            looked up at delivery time.
        autostart: Start the dispatcher on the first enqueue, or at once when
            the file holds tasks left from before (a restart resumes them).
            With False, call :meth:`start` (or let another process deliver).
        concurrency: Most deliveries in flight at once.
        queues: Retry policy by queue name; other queues use ``default_policy``.
        default_policy: Retry policy of queues not in ``queues``.
        dispatch_deadline: Seconds to wait for an answer when the task sets no deadline.
        max_task_size: Largest task accepted, in bytes of method, URL, headers and body.
        name_retention: Seconds a finished task's name stays taken.
        lease_duration: Seconds a claimed task stays leased without renewal; a
            dispatcher that dies loses its tasks to others after this long.
        poll_interval: Longest the dispatcher sleeps between looks for due
            tasks; tasks other processes enqueue are seen within a quarter of
            a second (it watches the file's ``data_version``).
        queue_limits: Rate and concurrency limits by queue name
            (:class:`~im_task.transports.local.models.QueueLimits`); other
            queues use ``default_limits``.
        default_limits: Limits of queues not in ``queue_limits``: by default
            those of Cloud Tasks, 500 dispatches a second and 1,000 at once.
        dead_letters: Where tasks the queue gives up on (its retry policy
            reached, e.g. while the target was down) are recorded, or None.
        keyring: The keys each delivery is signed with, so that the endpoint
            trusts its retry count (see :mod:`im_task.deliveryproof`), or a
            function that returns them; by default the keyring in force,
            looked up at each delivery. Deliveries go unsigned while there is
            none (the endpoint then leaves the retry limit to this queue).

    Raises:
        ConfigurationError: For a bad argument, or a file that cannot be
            opened or is damaged (the message names it and says what to do).

    Example:
        >>> with LocalTransport("/tmp/q.sqlite3", target="http://127.0.0.1:8000") as queue:  # doctest: +SKIP
        ...     queue.enqueue(TaskRequest(queue="default", url="/_ah/task/m/f", body=b"..."))
        ...     queue.join()
    """

    shares_data_directory = True  # the enqueuer and the endpoint share the queue file and its data directory

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        target: WSGIApp | str | None = None,
        autostart: bool = True,
        concurrency: int = 8,
        queues: Mapping[str, RetryPolicy] | None = None,
        default_policy: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so sharing it is safe
        dispatch_deadline: float = 600.0,
        max_task_size: int = INLINE_TASK_LIMIT,
        name_retention: float = 3600.0,
        lease_duration: float = 30.0,
        poll_interval: float = 1.0,
        queue_limits: Mapping[str, QueueLimits] | None = None,
        default_limits: QueueLimits = QueueLimits(),  # noqa: B008 - frozen, so sharing it is safe
        dead_letters: DeadLetterStore | None = None,
        keyring: KeyringSource = None,
    ) -> None:
        _check_positive("concurrency", concurrency, integer=True)
        check_keyring_source(keyring)
        _check_positive("dispatch_deadline", dispatch_deadline)
        _check_positive("max_task_size", max_task_size, integer=True)
        _check_positive("lease_duration", lease_duration)
        _check_positive("poll_interval", poll_interval)
        if isinstance(name_retention, bool) or not isinstance(name_retention, (int, float)) or name_retention < 0:
            raise ConfigurationError(f"name_retention must be a number of seconds >= 0, not {name_retention!r}.")
        if not isinstance(default_policy, RetryPolicy):
            raise ConfigurationError(f"default_policy must be a RetryPolicy, not {type(default_policy).__name__}.")
        for queue, policy in (queues or {}).items():
            if not isinstance(policy, RetryPolicy):
                raise ConfigurationError(f"queues[{queue!r}] must be a RetryPolicy, not {type(policy).__name__}.")
        _check_limits(queue_limits, default_limits, dead_letters)
        self._fixed: Deliverer | None = None
        if isinstance(target, str):
            self._fixed = HTTPDelivery(target)
        elif target is not None and not callable(target):
            raise ConfigurationError(
                f"target must be a WSGI callable, a base URL string or None, not {type(target).__name__}."
            )
        elif target is not None:
            self._fixed = WSGIDelivery(target)
        self.target = target
        if path is None:
            path = STATE.settings_in_force().local_data_dir() / QUEUE_FILE
        self.path = Path(path)
        self.autostart = autostart
        self.concurrency = concurrency
        self.max_task_size = max_task_size
        self.dispatch_deadline = float(dispatch_deadline)
        self.name_retention = float(name_retention)
        self.default_policy = default_policy
        self._policies = dict(queues or {})
        self._lease = float(lease_duration)
        self._poll = float(poll_interval)
        self.default_limits = default_limits
        self._limits = dict(queue_limits or {})
        self.dead_letters = dead_letters
        self._keyring = keyring
        self._store, unfinished = _open_store(self.path)
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._counters = Counters()
        self._dispatcher: Dispatcher | None = None
        self._ever_started = False
        self._closed = False
        self._registered: tuple[WSGIApp, WSGIDelivery] | None = None
        _live.add(self)
        if autostart and (unfinished or self._resolve() is not None):
            # Resume what was left when the last process stopped; with a target, deliver what other processes
            # (a script, cron, a shell) enqueue from now on, without waiting for an enqueue here.
            self.start()

    def __repr__(self) -> str:
        return f"LocalTransport({str(self.path)!r}, target={self.target!r})"

    def __enter__(self) -> LocalTransport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the Transport contract -----------------------------------------

    def enqueue(self, request: TaskRequest) -> str:
        """Stores a task durably and wakes the dispatcher.

        Args:
            request: The task.

        Returns:
            The task's name: ``request.name``, or a generated unique one.

        Raises:
            TaskAlreadyExistsError: The name is in use on the queue, or was
                within ``name_retention`` seconds.
            TaskTooLargeError: The task is over ``max_task_size``.
            EnqueueError: The transport is closed, the request is malformed,
                or the database failed.
        """
        check_open(self._closed, self)
        check_request(request, self)
        now = time.time()
        name = self._store.add(_new_task(request, now), now=now, name_retention=self.name_retention)
        self._wake()
        return name

    def _enqueue_built(self, fields: dict[str, Any]) -> str:
        """Stores a task the core built and checked (see :meth:`Transport._enqueue_built`), without checking it again.

        A transport closed, or with an ``enqueue`` other than this class's in force (a subclass's, a mixin's,
        one set on the class or the instance: a spy), takes the usual way.
        """
        if self._closed or type(self).enqueue is not _OWN_ENQUEUE or "enqueue" in self.__dict__:
            return self.enqueue(request_of(fields))
        now = time.time()
        name = self._store.add(_new_task(request_of(fields), now), now=now, name_retention=self.name_retention)
        self._wake()
        return name

    def enqueue_many(self, requests: Sequence[TaskRequest]) -> list[str | Exception | None]:
        """Stores tasks durably in one SQLite transaction, and wakes the dispatcher once.

        Each task is checked as :meth:`enqueue` checks it; one that is
        refused (malformed, over ``max_task_size``, a name in use or given
        twice in the batch) fails alone, and the others commit together. A
        database failure stores none of them: each one's result is that error.

        Args:
            requests: The tasks.

        Returns:
            One result per task, in order: its name (``request.name``, or a
            generated unique one), or the exception it failed with.
        """
        results: list[str | Exception | None] = []
        accepted: list[tuple[int, NewTask]] = []
        now = time.time()
        for request in requests:
            try:
                check_open(self._closed, self)
                check_request(request, self)
            except EnqueueError as exc:
                results.append(exc)
                continue
            accepted.append((len(results), _new_task(request, now)))
            results.append(None)
        if not accepted:
            return results
        stored: Sequence[str | EnqueueError]
        try:
            stored = self._store.add_many([task for _, task in accepted], now=now, name_retention=self.name_retention)
        except EnqueueError as exc:  # nothing was stored
            stored = [exc] * len(accepted)
        for (index, _), result in zip(accepted, stored, strict=True):
            results[index] = result
        if any(isinstance(result, str) for result in stored):
            self._wake()
        return results

    def _wake(self) -> None:
        """Tells the dispatcher a task was stored, starting it on the first enqueue."""
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.kick()
        elif self.autostart and not self._ever_started:
            self.start()

    def close(self) -> None:
        """Stops the dispatcher (letting deliveries in flight finish) and closes the database.

        Enqueueing afterwards raises :class:`~im_task.EnqueueError`. Calling
        it again does nothing. Called from inside a task this transport is
        delivering (say, one that reconfigures im-task), it returns at once:
        the database is closed once the deliveries in flight, that one
        included, are recorded.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.stop()
            if current_dispatcher() is dispatcher:
                dispatcher.when_stopped(self._release)
                return
        self._release()

    def _release(self) -> None:
        for deliverer in (self._fixed, self._registered[1] if self._registered else None):
            if deliverer is not None:
                deliverer.close()
        self._store.close()

    # -- dispatching ----------------------------------------------------

    def start(self) -> None:
        """Starts the dispatcher thread, if it is not running.

        Raises:
            EnqueueError: The transport is closed.
        """
        with self._lock:
            if self._store.closed:
                raise EnqueueError(f"The local queue at {self.path} is closed.")
            self._ever_started = True
            if self._dispatcher is not None:
                return
            self._dispatcher = Dispatcher(
                self._store,
                resolve=self._resolve,
                policy_for=self.policy_for,
                counters=self._counters,
                concurrency=self.concurrency,
                dispatch_deadline=self.dispatch_deadline,
                lease_duration=self._lease,
                name_retention=self.name_retention,
                poll_interval=self._poll,
                changed=self._changed,
                limits_for=self.limits_for,
                dead_letters=self.dead_letters,
                keyring=self._delivery_keyring,
            )
            self._dispatcher.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stops dispatching; deliveries in flight finish and are recorded.

        Tasks left stay in the file for the next start (or another process).
        After a stop, enqueueing does not start the dispatcher again; call
        :meth:`start`. Called from inside a task this transport is
        delivering, it does not wait (it would wait for that very task): the
        deliveries in flight are recorded as they end, and it returns False.

        Args:
            timeout: Most seconds to wait for deliveries in flight, or None.

        Returns:
            True when nothing was left in flight.
        """
        with self._lock:
            dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is None:
            return True
        return dispatcher.stop(timeout)

    @property
    def running(self) -> bool:
        """Whether the dispatcher thread runs."""
        dispatcher = self._dispatcher
        return dispatcher is not None and dispatcher.alive

    def join(self, timeout: float | None = None, *, scheduled: bool = False) -> bool:
        """Waits until no task is due or being delivered.

        It watches the whole file, so it also waits for deliveries by other
        processes sharing it; it does not start the dispatcher.

        It does not wait for what nothing can deliver. When this transport's
        dispatcher is not running (made with ``autostart=False`` and never
        started, or stopped), it waits only while another process
        visibly delivers from the file (holds a lease on a task); once none
        has for ``poll_interval`` seconds while tasks are left, it logs a
        warning and returns False. When the dispatcher runs but has no target
        (none was given and no adapter registered a WSGI app), tasks stay
        queued until one is registered: ``join(timeout)`` returns False when
        the timeout passes, and ``join()`` without a timeout logs a warning
        and goes on waiting for the registration. On a closed transport it
        returns True at once: nothing more happens there.

        Args:
            timeout: Most seconds to wait, or None to wait as long as it takes.
            scheduled: Also wait for tasks waiting for their countdown, eta
                or retry backoff, i.e. until no task is queued at all.

        Returns:
            True when idle (or closed); False when the timeout passed first,
            or when tasks are left that nothing is delivering (see above).

        Raises:
            Error: Called from inside a task delivered from the same file: it
                would wait for that very task.
        """
        delivering = current_dispatcher()
        if delivering is not None and delivering.store.path == self.path:
            raise Error(
                "LocalTransport.join() was called from inside a task delivered from the same queue file; it would "
                "wait for that very task to end. Wait for the queue from outside its tasks."
            )
        end = None if timeout is None else time.monotonic() + timeout
        stranded_since: float | None = None
        warned_no_target = False
        while True:
            if not self._busy(scheduled):
                return True
            dispatcher = self._dispatcher
            if dispatcher is None or not dispatcher.alive:
                try:
                    leased = self._store.leased_elsewhere(None, now=time.time())
                except sqlite3.ProgrammingError:
                    return True  # closed meanwhile: nothing more happens here
                if not leased:
                    clock = time.monotonic()
                    stranded_since = clock if stranded_since is None else stranded_since
                    if clock - stranded_since >= self._poll:
                        logger.warning(
                            "LocalTransport.join() gives up: tasks are left in %s but nothing delivers them (this "
                            "transport's dispatcher is not running: call start(), or run `im-task worker`).",
                            self.path,
                        )
                        return False
                else:
                    stranded_since = None
            elif timeout is None and not warned_no_target and dispatcher.waiting_for_target:
                warned_no_target = True
                logger.warning(
                    "LocalTransport.join() waits for tasks the local queue cannot deliver yet: it has no target "
                    "(none was given and no adapter registered a WSGI app). It waits until one is registered; "
                    "pass target= to LocalTransport, or a timeout to join()."
                )
            wait = _JOIN_POLL
            if end is not None:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                wait = min(wait, left)
            with self._changed:
                self._changed.wait(wait)

    def _busy(self, scheduled: bool) -> bool:
        dispatcher = self._dispatcher
        if dispatcher is not None and dispatcher.in_flight:
            return True
        try:
            return self._store.busy(now=time.time(), scheduled=scheduled)
        except sqlite3.ProgrammingError:
            return False  # closed: nothing more happens here

    def _has_unfinished_tasks(self) -> bool:
        stats = self._store.counts(now=time.time())
        return bool(stats.queued or stats.running)

    def policy_for(self, queue: str) -> RetryPolicy:
        """The retry policy of a queue."""
        return self._policies.get(queue, self.default_policy)

    def limits_for(self, queue: str) -> QueueLimits:
        """The rate and concurrency limits of a queue."""
        return self._limits.get(queue, self.default_limits)

    def _resolve(self) -> Deliverer | None:
        if self._fixed is not None:
            return self._fixed
        app = STATE.local_target
        if app is None:
            return None
        registered = self._registered
        if registered is None or registered[0] is not app:
            registered = self._registered = (app, WSGIDelivery(app))
        return registered[1]

    def _delivery_keyring(self) -> Keyring | None:
        return signing_keyring(self._keyring)

    # -- inspection ------------------------------------------------------

    def stats(self, queue: str | None = None) -> QueueStats:
        """Counts of tasks by state (every process), and what this transport did.

        Args:
            queue: Count only this queue's tasks (the counters are not per queue).

        Returns:
            The counts.
        """
        counts = self._run(lambda: self._store.counts(now=time.time(), queue=queue))
        return QueueStats(
            queued=counts.queued,
            due=counts.due,
            running=counts.running,
            done=counts.done,
            failed=counts.failed,
            gave_up=counts.gave_up,
            dropped=counts.dropped,
            delivered=self._counters.delivered,
            retried=self._counters.retried,
            given_up=self._counters.given_up,
            ended=dict(self._counters.ended),
        )

    def tasks(self, state: TaskState | None = None, queue: str | None = None, limit: int = 100) -> list[TaskInfo]:
        """Lists stored tasks: running, then queued by due time, then failed and done, latest first.

        Args:
            state: Only tasks in this state.
            queue: Only this queue's tasks.
            limit: Most tasks to list.

        Returns:
            The tasks.

        Raises:
            ConfigurationError: For an unknown state or a bad limit.
        """
        if state is not None and state not in STATES:
            raise ConfigurationError(f"Unknown task state {state!r}; use one of {', '.join(STATES)}.")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be a whole number >= 1, not {limit!r}.")
        return self._run(lambda: self._store.tasks(state=state, queue=queue, limit=limit))

    def purge(self, queue: str | None = None, *, states: Sequence[TaskState] = ("queued",)) -> int:
        """Deletes tasks: by default the queued ones; running ones are never deleted.

        Their names are free again at once.

        Args:
            queue: Only this queue's tasks, or None for every queue.
            states: Which tasks to delete, among ``"queued"``, ``"done"`` and ``"failed"``.

        Returns:
            How many tasks were deleted.

        Raises:
            ConfigurationError: For an unknown state.
        """
        bad = [s for s in states if s not in STATES or s == "running"]
        if bad:
            raise ConfigurationError(
                f"Cannot purge tasks in state(s) {bad!r}; use {', '.join(s for s in STATES if s != 'running')}."
            )
        return self._run(lambda: self._store.purge(queue=queue, states=states))

    def task(self, name: str, queue: str | None = None) -> list[TaskDetail]:
        """The stored tasks of that name, with their body and last error in full.

        Args:
            name: The task's name.
            queue: Only this queue's task; by default the task of that name in every queue.

        Returns:
            One per queue holding a task of that name (none when there is none).
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"name must be a task name, not {name!r}.")
        return self._run(lambda: self._store.detail(name, queue=queue))

    def retry(
        self,
        name: str | None = None,
        *,
        queue: str | None = None,
        states: Sequence[TaskState] = (),
        headers: Mapping[str, str] | None = None,
    ) -> int:
        """Queues tasks that failed, gave up or were dropped again, due now, with their attempts counted afresh.

        Args:
            name: Only the task of this name.
            queue: Only this queue's tasks.
            states: Only tasks in these states, among ``"failed"``, ``"gave-up"``
                and ``"dropped"``; all three when empty.
            headers: Headers to add to each task's own (``im-task queue retry`` adds the signed mark of a
                re-run, :func:`im_task.reruns.rerun_headers`, so that a task that keeps a final state runs again).

        Returns:
            How many tasks were queued again.

        Raises:
            ConfigurationError: For a state that cannot be retried.
        """
        bad = [s for s in states if s not in FINISHED_STATES or s == "done"]
        if bad:
            raise ConfigurationError(
                f"Cannot retry tasks in state(s) {bad!r}: a done task keeps no body; use failed, gave-up or dropped."
            )
        if headers is not None and (
            not isinstance(headers, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise ConfigurationError(f"headers must be a mapping of str to str, not {headers!r}.")
        count = self._run(
            lambda: self._store.retry(now=time.time(), name=name, queue=queue, states=states, headers=headers)
        )
        if count:
            self._wake()
        return count

    def compact(self) -> bool:
        """Checkpoints the write-ahead log and vacuums the file when at least half of it is free.

        The dispatcher does this once a minute by itself.

        Returns:
            Whether the file was vacuumed.
        """
        return self._run(self._store.compact)

    def _after_fork(self) -> None:
        """In a child process: starts afresh with its own database connection and no dispatcher.

        Threads do not survive ``fork()`` and an HTTP connection must not be
        shared by two processes, so the inherited ones are abandoned (the task
        store opens a connection of its own on first use). The dispatcher
        starts again as it did in the parent.
        """
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._counters = Counters()
        self._dispatcher = None
        self._ever_started = False
        self._registered = None
        if isinstance(self.target, str):
            self._fixed = HTTPDelivery(self.target)

    def _run(self, read: Callable[[], _T]) -> _T:
        try:
            return read()
        except sqlite3.ProgrammingError as exc:
            raise Error(f"The local queue at {self.path} is closed.") from exc
        except sqlite3.DatabaseError as exc:
            if is_corrupt(exc):
                raise Error(corruption_message(self.path, exc)) from exc
            raise Error(f"The local queue's database {self.path} failed: {exc}") from exc


#: The enqueue :meth:`LocalTransport._enqueue_built` stands in for (the class's may be replaced later).
_OWN_ENQUEUE = LocalTransport.enqueue


def _new_task(request: TaskRequest, now: float) -> NewTask:
    """What the store keeps of a checked request (the store names a task that has no name)."""
    schedule = request.schedule_time
    if schedule is not None and schedule.tzinfo is None:
        schedule = schedule.replace(tzinfo=dt.timezone.utc)
    deadline = request.dispatch_deadline
    return NewTask(
        queue=request.queue,
        name=request.name or None,
        url=request.url,
        headers=dict(request.headers),
        body=request.body,
        eta=now if schedule is None else schedule.timestamp(),
        deadline=None if deadline is None else max(deadline.total_seconds(), 0.001),
        retry_options=request.retry_options,
    )


def _check_positive(name: str, value: object, *, integer: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:  # type: ignore[operator]
        kind = "whole number" if integer else "number"
        raise ConfigurationError(f"{name} must be a {kind} > 0, not {value!r}.")


def _open_store(path: Path) -> tuple[TaskStore, bool]:
    """Opens the file, and says whether it holds tasks waiting or running; a damaged file is a clear error."""
    try:
        store = TaskStore(path)
    except (sqlite3.Error, OSError) as exc:
        if is_corrupt(exc):
            raise ConfigurationError(corruption_message(path, exc)) from exc
        raise ConfigurationError(f"The local queue cannot open {path}: {exc}") from exc
    try:
        stats = store.counts(now=time.time())
    except sqlite3.DatabaseError as exc:
        store.close()
        if is_corrupt(exc):
            raise ConfigurationError(corruption_message(path, exc)) from exc
        raise ConfigurationError(f"The local queue cannot read {path}: {exc}") from exc
    return store, bool(stats.queued or stats.running)


def _check_limits(queue_limits: Mapping[str, QueueLimits] | None, default_limits: object, dead_letters: object) -> None:
    if not isinstance(default_limits, QueueLimits):
        raise ConfigurationError(f"default_limits must be a QueueLimits, not {type(default_limits).__name__}.")
    for queue, limits in (queue_limits or {}).items():
        if not isinstance(limits, QueueLimits):
            raise ConfigurationError(f"queue_limits[{queue!r}] must be a QueueLimits, not {type(limits).__name__}.")
    if dead_letters is not None and not isinstance(dead_letters, DeadLetterStore):
        raise ConfigurationError(
            "dead_letters must be a DeadLetterStore (with record, get, list, delete and purge), "
            f"not {type(dead_letters).__name__}."
        )


def _after_fork_in_child() -> None:
    for transport in list(_live):
        transport._after_fork()


def _stop_at_exit() -> None:
    """Lets deliveries in flight finish (briefly) when the interpreter exits."""
    for transport in list(_live):
        try:
            transport.stop(timeout=_EXIT_TIMEOUT)
        except Exception:  # pragma: no cover - never let exit fail
            logger.debug("Stopping %r at exit failed", transport, exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_stop_at_exit)
