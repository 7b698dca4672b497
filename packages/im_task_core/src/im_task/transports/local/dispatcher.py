"""The dispatcher: a thread that claims due tasks, delivers them on a worker pool, and retries.

The loop, on one thread:

1. renew the leases of tasks in flight, now and then forget old done tasks;
2. in one transaction, record the outcomes the workers reported since the
   last turn, settle the tasks whose lease ran out (as failed attempts), and
   claim as many due tasks, oldest due first, as there are free workers; then
   hand them out. A task is claimed only when a worker can start it, so its
   attempt is counted when it starts, and a dispatcher never hoards tasks
   other dispatchers sharing the file could run;
3. sleep until there is something to do (an outcome, or an enqueue while a
   worker is free), or until the next due time (at most ``poll_interval``,
   to notice tasks other processes enqueue).

A failed attempt is retried after the backoff of the queue's policy with the
task's own retry options laid over it, until the policy gives up; the task
is then kept as ``failed`` and logged at ERROR.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from im_task import headers
from im_task.retry import RetryOptions, RetryPolicy
from im_task.transports.local.delivery import Deliverer, Outcome
from im_task.transports.local.models import TaskState
from im_task.transports.local.store import ClaimedTask, LostAttempt, Settlement, TaskStore
from im_task.transports.local.workers import WorkerPool

__all__ = ["Counters", "Dispatcher", "attempt_headers", "current_dispatcher"]

logger = logging.getLogger("im_task.local")

_HOUSEKEEPING_INTERVAL = 60.0
_ERROR_PAUSE = 1.0
_MIN_SLEEP = 0.002
_GATHER = 0.002
_delivering = threading.local()  # .dispatcher: the Dispatcher whose task this worker thread is delivering


def current_dispatcher() -> Dispatcher | None:
    """The dispatcher whose task the calling thread is delivering, or None outside a delivery."""
    dispatcher: Dispatcher | None = getattr(_delivering, "dispatcher", None)
    return dispatcher


class Counters:
    """What a transport's dispatchers did: tasks delivered, retried, given up on.

    Attributes:
        delivered: Attempts answered with 2xx.
        retried: Failed attempts scheduled to run again.
        given_up: Tasks marked failed.
    """

    def __init__(self) -> None:
        self.delivered = 0
        self.retried = 0
        self.given_up = 0


def attempt_headers(task: ClaimedTask) -> dict[str, str]:
    """The headers of one attempt: the task's own, then the queue's, as Cloud Tasks sends them.

    Headers a queue sets itself (``X-AppEngine-*``, ``X-CloudTasks-*``,
    ``X-Google-*``, also spelt with ``_``) and connection headers are dropped
    from the task's own (see :func:`~im_task.headers.forwardable_headers`).

    Args:
        task: The claimed task.

    Returns:
        The headers to send.
    """
    retry = task.attempt > 1
    return headers.delivery_headers(
        task.headers,
        headers.make_task_headers(
            queue_name=task.queue,
            task_name=task.name,
            retry_count=task.attempt - 1,
            execution_count=task.executions,
            eta=dt.datetime.fromtimestamp(task.eta, dt.timezone.utc),
            previous_response=task.previous_status if retry else None,
            retry_reason=task.previous_error if retry else None,
        ),
    )


@dataclass(frozen=True)
class _Finished:
    """A delivered attempt, without its body."""

    id: int
    attempt: int
    queue: str
    name: str
    url: str
    first_attempt: float
    retry_options: RetryOptions | None
    outcome: Outcome | None  # None: not attempted (the dispatcher stopped first), to give back
    finished: float


class Dispatcher:
    """Delivers the due tasks of a store until stopped.

    Args:
        store: The task store.
        resolve: Returns the deliverer to use, or None when there is no target yet.
        policy_for: The retry policy of a queue, by name.
        counters: Where to count what happened.
        concurrency: Most deliveries in flight at once.
        dispatch_deadline: Seconds to wait for an answer when the task sets no deadline.
        lease_duration: Seconds a claim lasts without renewal; it is renewed every third of it.
        name_retention: Seconds done tasks are remembered.
        poll_interval: Longest sleep, so that tasks enqueued by other processes are seen.
        changed: Notified whenever tasks were settled, for :meth:`LocalTransport.join`.
    """

    def __init__(
        self,
        store: TaskStore,
        *,
        resolve: Callable[[], Deliverer | None],
        policy_for: Callable[[str], RetryPolicy],
        counters: Counters,
        concurrency: int,
        dispatch_deadline: float,
        lease_duration: float,
        name_retention: float,
        poll_interval: float,
        changed: threading.Condition,
    ) -> None:
        self.owner = uuid.uuid4().hex
        self._store = store
        self._resolve = resolve
        self._policy_for = policy_for
        self._counters = counters
        self._concurrency = concurrency
        self._deadline = dispatch_deadline
        self._lease = lease_duration
        self._retention = name_retention
        self._poll = poll_interval
        self._changed = changed
        self._cond = threading.Condition()
        self._results: list[_Finished] = []
        self._kicked = False
        self._stopping = False
        self._in_flight = 0
        self._pool = WorkerPool(concurrency)
        self._thread = threading.Thread(target=self._run, name="im-task-dispatcher", daemon=True)
        self._warned_no_target = False
        self._no_target = False
        self._ended = False
        self._when_stopped: list[Callable[[], None]] = []

    @property
    def in_flight(self) -> int:
        """Deliveries claimed and not yet recorded."""
        return self._in_flight

    @property
    def alive(self) -> bool:
        """Whether the dispatcher thread runs."""
        return self._thread.is_alive()

    @property
    def store(self) -> TaskStore:
        """The task store it delivers from."""
        return self._store

    @property
    def waiting_for_target(self) -> bool:
        """Whether it found nothing to deliver to at its last turn: no target given, no app registered."""
        return self._no_target

    def start(self) -> None:
        """Starts the dispatcher thread."""
        self._thread.start()

    def kick(self) -> None:
        """Wakes the dispatcher: a task was enqueued."""
        with self._cond:
            self._kicked = True
            self._cond.notify()

    def stop(self, timeout: float | None = None) -> bool:
        """Stops claiming tasks and waits for the deliveries in flight.

        Called from inside one of its own deliveries (a task that closes or
        reconfigures its transport), it does not wait, as it would wait for
        itself: the deliveries in flight, that one included, are recorded by
        the dispatcher thread as they end.

        Args:
            timeout: Most seconds to wait, or None to wait for them all.

        Returns:
            True when every delivery in flight finished and was recorded.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if current_dispatcher() is self:
            return False
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        finished = not self._thread.is_alive()
        self._pool.shutdown(wait=finished, timeout=1.0)
        return finished and self._in_flight == 0

    def when_stopped(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` once the dispatcher thread has recorded its last delivery and ended.

        It is called by the dispatcher thread, or at once if the thread has
        ended (or never started). An exception it raises is logged.

        Args:
            callback: What to call.
        """
        with self._cond:
            if not self._ended and self._thread.ident is not None:
                self._when_stopped.append(callback)
                return
        _call_logged(callback)

    # -- the loop --------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._pool.shutdown(wait=False)
            with self._cond:
                self._ended = True
                callbacks, self._when_stopped = self._when_stopped, []
            for callback in callbacks:
                _call_logged(callback)

    def _loop(self) -> None:
        next_housekeeping = 0.0
        renew_every = self._lease / 3
        next_renewal = time.monotonic() + renew_every
        while True:
            with self._cond:
                results, self._results = self._results, []
                stopping = self._stopping
            timeout = self._poll
            try:
                if stopping:
                    if results:
                        self._settle(results)
                    break
                clock = time.monotonic()
                if self._in_flight and clock >= next_renewal:
                    self._store.renew(self.owner, lease_until=time.time() + self._lease)
                    next_renewal = clock + renew_every
                if clock >= next_housekeeping:
                    self._store.prune(finished_before=time.time() - self._retention)
                    next_housekeeping = clock + _HOUSEKEEPING_INTERVAL
                timeout = self._dispatch(results)
                if self._in_flight:
                    timeout = min(timeout, max(next_renewal - time.monotonic(), _MIN_SLEEP))
            except Exception:
                if self._store.closed:  # closed under us (a stop that timed out): nothing more to do
                    logger.debug("Local queue store closed; dispatcher ends")
                    return
                logger.exception("The local queue's dispatcher failed; trying again in %g s", _ERROR_PAUSE)
                timeout = _ERROR_PAUSE
            self._sleep(timeout)
        self._drain()

    def _sleep(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        with self._cond:
            while not self._stopping:
                if self._results or (self._kicked and self._in_flight < self._concurrency):
                    break
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            kicked, self._kicked = self._kicked, False
        if kicked and self._in_flight and not self._stopping:
            # Workers are busy: let a few more enqueues gather, to claim them in one go.
            time.sleep(_GATHER)

    def _dispatch(self, results: list[_Finished]) -> float:
        """Records ``results`` and claims due tasks for the free workers, in one transaction.

        Returns:
            How long to sleep.
        """
        free = self._concurrency - self._in_flight + len(results)
        deliverer = self._resolve() if free > 0 else None
        if deliverer is None:
            if results:
                self._settle(results)
            if free <= 0:
                return self._poll  # an outcome wakes the loop
            self._no_target = True
            if not self._warned_no_target and self._store.busy(now=time.time(), scheduled=False):
                self._warned_no_target = True
                logger.warning(
                    "The local queue has tasks to deliver but no target: no WSGI app is registered and none was "
                    "given. Tasks stay queued until an adapter registers the app, or run `im-task worker --target URL`."
                )
            return min(self._poll, 0.5)
        self._no_target = self._warned_no_target = False
        now = time.time()
        lost: list[tuple[LostAttempt, float | None]] = []
        tasks: list[ClaimedTask] = []

        def record_and_claim(settlements: Sequence[Settlement]) -> None:
            tasks[:] = self._store.claim(
                self.owner,
                free,
                now=now,
                lease_until=now + self._lease,
                on_lost=self._lost_attempt_policy(lost),
                settle=settlements,
            )

        self._settle(results, record=record_and_claim)
        if lost:
            self._report_lost(lost, now)
        for task in tasks:
            self._in_flight += 1
            self._pool.submit(self._job(task, deliverer))
        if len(tasks) == free:
            return self._poll
        wake = self._store.next_wake(self.owner)
        if wake is None:
            return self._poll
        return min(max(wake - time.time(), _MIN_SLEEP), self._poll)

    def _lost_attempt_policy(
        self, verdicts: list[tuple[LostAttempt, float | None]]
    ) -> Callable[[LostAttempt], float | None]:
        """The retry policy applied to attempts whose lease ran out, noting each verdict in ``verdicts``."""

        def decide(lost: LostAttempt) -> float | None:
            due = self._retry_at(lost.queue, lost.retry_options, lost.attempt, lost.first_attempt, now=lost.found)
            verdicts.append((lost, due))
            return due

        return decide

    def _retry_at(
        self, queue: str, options: RetryOptions | None, attempt: int, first_attempt: float, *, now: float
    ) -> float | None:
        """When to retry a failed attempt, or None when the retry policy gives up."""
        policy = self._policy_for(queue).with_task_options(options)
        if policy.gives_up(attempt, now - first_attempt):
            return None
        return now + policy.backoff(attempt)

    def _report_lost(self, verdicts: list[tuple[LostAttempt, float | None]], now: float) -> None:
        for lost, due in verdicts:
            if due is None:
                self._counters.given_up += 1
                logger.error(
                    "Task %s of queue %s (POST %s): attempt %d lost its lease (its process died or stalled "
                    "mid-delivery). Giving up after %d attempt(s).",
                    lost.name,
                    lost.queue,
                    lost.url,
                    lost.attempt,
                    lost.attempt,
                )
            else:
                self._counters.retried += 1
                logger.warning(
                    "Task %s of queue %s (POST %s): attempt %d lost its lease (its process died or stalled "
                    "mid-delivery); retry in %.3g s.",
                    lost.name,
                    lost.queue,
                    lost.url,
                    lost.attempt,
                    max(due - now, 0.0),
                )
        with self._changed:
            self._changed.notify_all()

    def _job(self, task: ClaimedTask, deliverer: Deliverer) -> Callable[[], None]:
        def deliver() -> None:
            deadline = task.deadline if task.deadline is not None else self._deadline
            outcome: Outcome | None = None
            if not self._stopping:  # once stopping, claimed tasks not started yet are given back
                _delivering.dispatcher = self
                try:
                    outcome = deliverer.deliver(task.url, task.body, attempt_headers(task), deadline)
                except Exception as exc:
                    logger.exception("Delivering task %s of queue %s failed unexpectedly", task.name, task.queue)
                    outcome = Outcome(None, f"INTERNAL_ERROR: {type(exc).__name__}")
                finally:
                    _delivering.dispatcher = None
            finished = _Finished(
                task.id,
                task.attempt,
                task.queue,
                task.name,
                task.url,
                task.first_attempt,
                task.retry_options,
                outcome,
                time.time(),
            )
            with self._cond:
                self._results.append(finished)
                self._cond.notify()

        return deliver

    def _settle(
        self, results: list[_Finished], *, record: Callable[[Sequence[Settlement]], object] | None = None
    ) -> None:
        """Records the outcome of attempts (with ``record``, by default the store's ``settle``)."""
        settlements = []
        delivered = retried = given_up = 0
        for r in results:
            outcome = r.outcome
            if outcome is None:
                settlements.append(Settlement(r.id, r.attempt, "queued", 0.0, None, None, False, r.finished, True))
                continue
            if outcome.ok:
                delivered += 1
                settlements.append(Settlement(r.id, r.attempt, "done", 0.0, outcome.status, None, True, r.finished))
                continue
            retry_at = self._retry_at(r.queue, r.retry_options, r.attempt, r.first_attempt, now=r.finished)
            if retry_at is None:
                given_up += 1
                logger.error(
                    "Task %s of queue %s (POST %s) failed after %d attempt(s); last status %s (%s). Giving up.",
                    r.name,
                    r.queue,
                    r.url,
                    r.attempt,
                    outcome.status if outcome.status is not None else "none",
                    outcome.error,
                )
                state: TaskState = "failed"
                due = 0.0
            else:
                retried += 1
                logger.info(
                    "Task %s of queue %s (POST %s) failed (%s); retry %d in %.3g s.",
                    r.name,
                    r.queue,
                    r.url,
                    outcome.error,
                    r.attempt,
                    retry_at - r.finished,
                )
                state = "queued"
                due = retry_at
            settlements.append(
                Settlement(r.id, r.attempt, state, due, outcome.status, outcome.error, outcome.executed, r.finished)
            )
        try:
            if record is not None:
                record(settlements)
            else:
                self._store.settle(self.owner, settlements)
        except sqlite3.Error:
            with self._cond:  # keep them to record on the next turn
                self._results[:0] = results
            raise
        self._counters.delivered += delivered
        self._counters.retried += retried
        self._counters.given_up += given_up
        self._in_flight -= len(results)
        if results:
            with self._changed:
                self._changed.notify_all()

    def _drain(self) -> None:
        """After a stop: waits for the deliveries in flight and records them."""
        while self._in_flight:
            with self._cond:
                if not self._results:
                    self._cond.wait(self._lease / 3)
                results, self._results = self._results, []
            try:
                if results:
                    self._settle(results)
                elif self._in_flight:
                    self._store.renew(self.owner, lease_until=time.time() + self._lease)
            except Exception:
                if not self._store.closed:
                    logger.exception("Could not record the last deliveries; their leases will run out")
                return


def _call_logged(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        logger.exception("A local queue callback failed after its dispatcher stopped")
