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
   worker is free), until another process commits to the file (SQLite's
   ``data_version``, read four times a second), or until the next due time
   (at most ``poll_interval``).

Step 2 is a *turn*, run by one thread at a time (the turn lock). When the
last delivery in flight ends, its worker thread runs the turn itself rather
than wake the dispatcher thread (a thread switch costs more than the turn):
with every worker busy, the tasks then flow without the dispatcher thread,
which still renews the leases, keeps house, and takes over whenever a
worker's turn cannot be run, fails, or leaves workers free.

Each queue's rate and concurrency limits (:class:`QueueLimits`) cap what is
claimed. A failed attempt is retried after the backoff of the queue's policy
with the task's own retry options laid over it, until the policy gives up;
the task is then kept as ``gave-up``, recorded as a dead letter and logged
at ERROR. A 2xx whose ``X-Im-Task-Outcome`` says the task failed, gave up or
was dropped ends it in that state (the endpoint recorded its dead letter).
When the file cannot be written (a full disk, a damaged file), the
dispatcher pauses, doubling the pause up to a minute, and says so once per
pause.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

from im_task import headers
from im_task.deadletter import DEAD_OUTCOMES, DeadLetter, DeadLetterStore
from im_task.deliveryproof import Attempt, proof_headers
from im_task.keys import Keyring
from im_task.retry import RetryOptions, RetryPolicy
from im_task.transports.local.delivery import Deliverer, Outcome
from im_task.transports.local.models import QueueLimits, TaskState
from im_task.transports.local.store import (
    ClaimedTask,
    LostAttempt,
    Settlement,
    TaskStore,
    corruption_message,
    is_corrupt,
    write_failure,
)
from im_task.transports.local.workers import WorkerPool

__all__ = ["Counters", "Dispatcher", "attempt_headers", "current_dispatcher"]

logger = logging.getLogger("im_task.local")

_HOUSEKEEPING_INTERVAL = 60.0
_ERROR_PAUSE = 1.0  # the first pause after a storage error; it doubles on each error in a row...
_MAX_ERROR_PAUSE = 60.0  # ...up to this
_WATCH = 0.25  # seconds between looks at the file's data_version while asleep
_HINTS = {
    400: "a Django project answers 400 to a Host its ALLOWED_HOSTS refuses: add the target's host "
    "('localhost' for in-process delivery) to ALLOWED_HOSTS",
    403: "the app did not accept the task's signature: give the process that enqueued it the same secret "
    "(IM_TASK_SECRET) as the app",
    404: "nothing answers at {url}: check that the task route is mounted in the app (the adapter set up, its URLs "
    "included) and that the target (and its path prefix) is the app's",
    405: "{url} does not take a POST: something else is mounted at the task route",
}
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
        delivered: Attempts that ran the task.
        retried: Failed attempts scheduled to run again.
        given_up: Tasks ended as failed, gave up or dropped.
        ended: ``given_up`` by the state the tasks ended in (``failed``, ``gave-up``, ``dropped``).
    """

    def __init__(self) -> None:
        self.delivered = 0
        self.retried = 0
        self.given_up = 0
        self.ended: dict[str, int] = {}

    def count_end(self, state: str, count: int = 1) -> None:
        """Counts ``count`` tasks ended as failed, gave up or dropped (``state``)."""
        if count:
            self.given_up += count
            self.ended[state] = self.ended.get(state, 0) + count


def attempt_headers(task: ClaimedTask, keyring: Keyring | None = None) -> dict[str, str]:
    """The headers of one attempt: the task's own, then the queue's, as Cloud Tasks sends them.

    Headers a queue sets itself (``X-AppEngine-*``, ``X-CloudTasks-*``,
    ``X-Google-*``, also spelt with ``_``) and connection headers are dropped
    from the task's own (see :func:`~im_task.headers.forwardable_headers`).
    The same as :func:`~im_task.headers.delivery_headers` of the task's own
    headers and :func:`~im_task.headers.make_task_headers`, with the task's
    own part kept from the last task whose own headers were the same.

    Args:
        task: The claimed task.
        keyring: The keys to sign the attempt's proof with (:mod:`im_task.deliveryproof`), or None for none.

    Returns:
        The headers to send.
    """
    own, base = _last_own[0]
    if task.headers is not own and task.headers != own:
        own = task.headers
        base = headers.delivery_headers(own, {})
        _last_own[0] = (own, base)
    sent = base.copy()
    sent[_QUEUE_NAME] = task.queue
    sent[_TASK_NAME] = task.name
    sent[_RETRY_COUNT] = str(task.attempt - 1)
    sent[_EXECUTION_COUNT] = str(task.executions)
    sent[_ETA] = f"{dt.datetime.fromtimestamp(task.eta, dt.timezone.utc).timestamp():.6f}"
    if task.attempt > 1:
        if task.previous_status is not None:
            sent[_PREVIOUS_RESPONSE] = str(task.previous_status)
        if task.previous_error:
            sent[_RETRY_REASON] = task.previous_error
    if keyring is not None:
        attempt = Attempt(task.queue, task.name, task.attempt - 1, task.executions)
        sent.update(proof_headers(attempt, task.body, keyring))
    return sent


# The queue's headers, as make_task_headers names them; and the own headers of the last task, with what they
# become (replaced whole, never changed: read by every worker thread).
_QUEUE_NAME, _TASK_NAME, _RETRY_COUNT, _EXECUTION_COUNT, _ETA, _PREVIOUS_RESPONSE, _RETRY_REASON = (
    headers.make_task_headers(
        queue_name="q", task_name="t", eta=dt.datetime.now(dt.timezone.utc), previous_response=500, retry_reason="r"
    )
)
_last_own: list[tuple[dict[str, str], dict[str, str]]] = [({}, headers.delivery_headers({}, {}))]


class _Attempted(NamedTuple):
    task: ClaimedTask
    outcome: Outcome | None  # None: not attempted (the dispatcher stopped first), to give back
    finished: float
    where: str = ""  # the full URL delivered to, for the log (the target's base URL, then url)


class _Finished(_Attempted):
    """A delivered attempt: the task claimed, what its delivery got, and when it ended (a named tuple: one per task)."""

    __slots__ = ()

    @property
    def id(self) -> int:
        return self.task.id

    @property
    def attempt(self) -> int:
        return self.task.attempt

    @property
    def queue(self) -> str:
        return self.task.queue

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def url(self) -> str:
        return self.task.url

    @property
    def first_attempt(self) -> float:
        return self.task.first_attempt

    @property
    def retry_options(self) -> RetryOptions | None:
        return self.task.retry_options

    @property
    def headers(self) -> dict[str, str]:
        return self.task.headers

    @property
    def body(self) -> bytes:
        return self.task.body


class _Bucket:
    """One queue's rate (a token bucket holding a second of dispatches) and its attempts in flight."""

    def __init__(self, limits: QueueLimits, now: float) -> None:
        self.limits = limits
        self.capacity = max(1.0, limits.max_dispatches_per_second)
        self.tokens = self.capacity
        self.stamp = now
        self.in_flight = 0

    def allowance(self, now: float) -> int:
        rate = self.limits.max_dispatches_per_second
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        return max(0, min(int(self.tokens), self.limits.max_concurrent_dispatches - self.in_flight))

    def wait(self) -> float | None:
        """Seconds until a token is back, or None when the bucket has one (or concurrency is the limit)."""
        if self.tokens >= 1 or self.in_flight >= self.limits.max_concurrent_dispatches:
            return None
        return (1 - self.tokens) / self.limits.max_dispatches_per_second


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
        poll_interval: Longest sleep between looks for due tasks.
        changed: Notified whenever tasks were settled, for :meth:`LocalTransport.join`.
        limits_for: The rate and concurrency limits of a queue, by name.
        dead_letters: Where tasks the queue gives up on are recorded, or None.
        keyring: Returns the keys each attempt's proof is signed with (:mod:`im_task.deliveryproof`), or None.
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
        limits_for: Callable[[str], QueueLimits] = lambda queue: QueueLimits(),
        dead_letters: DeadLetterStore | None = None,
        keyring: Callable[[], Keyring | None] = lambda: None,
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
        self._turn = threading.Lock()  # held by the thread recording outcomes and claiming: one at a time
        self._results: list[_Finished] = []
        self._kicked = False
        self._look = False  # a turn on a worker thread asks the dispatcher thread to look again
        self._stopping = False
        self._in_flight = 0
        self._pool = WorkerPool(concurrency)
        self._thread = threading.Thread(target=self._run, name="im-task-dispatcher", daemon=True)
        self._warned_no_target = False
        self._no_target = False
        self._ended = False
        self._when_stopped: list[Callable[[], None]] = []
        self._limits_for = limits_for
        self._dead_letters = dead_letters
        self._keyring = keyring
        self._buckets: dict[str, _Bucket] = {}
        self._seen_version: int | None = None
        self._failures = 0  # storage errors in a row
        self._failures_at_stop = 0  # storage errors since a stop was asked (not counted in _failures)

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
        give_up_at: float | None = None  # once stopping: when to stop trying to record the last outcomes
        while True:
            with self._cond:
                stopping = self._stopping
            if stopping and give_up_at is None:
                give_up_at = time.monotonic() + self._lease
            timeout = self._poll
            pause = False
            try:
                if stopping:
                    with self._turn:
                        results = self._take_results()
                        if results:
                            self._settle(results)
                    break
                clock = time.monotonic()
                if self._in_flight and clock >= next_renewal:
                    self._store.renew(self.owner, lease_until=time.time() + self._lease)
                    next_renewal = clock + renew_every
                if clock >= next_housekeeping:
                    self._store.prune(finished_before=time.time() - self._retention)
                    self._store.compact()
                    next_housekeeping = clock + _HOUSEKEEPING_INTERVAL
                with self._turn:
                    timeout = self._dispatch(self._take_results())  # taken last: a failure above loses none
                if self._in_flight:
                    timeout = min(timeout, max(next_renewal - time.monotonic(), _MIN_SLEEP))
                if self._failures:
                    logger.warning("The local queue's database %s can be written again; delivering.", self._store.path)
                self._failures = 0
            except Exception as exc:
                if self._store.closed:  # closed under us (a stop that timed out): nothing more to do
                    logger.debug("Local queue store closed; dispatcher ends")
                    return
                if stopping and give_up_at is not None:
                    if time.monotonic() + _ERROR_PAUSE > give_up_at:
                        logger.error(
                            "The local queue could not record the last deliveries in %s (%s); their leases will run "
                            "out and they will be delivered again.",
                            self._store.path,
                            exc,
                        )
                        return
                    # A stop already asked: no backoff (a stop must end), and one line, not one a second.
                    if self._failures_at_stop == 0:
                        self._storage_failed(exc, stopping=True)
                    self._failures_at_stop += 1
                    time.sleep(_ERROR_PAUSE)
                    continue
                timeout = self._storage_failed(exc)
                pause = True
            self._sleep(timeout, pause=pause)
        self._drain()

    def _take_results(self) -> list[_Finished]:
        """The outcomes the workers reported since the last turn (:meth:`_settle` puts them back if it fails)."""
        with self._cond:
            results, self._results = self._results, []
        return results

    def _storage_failed(self, exc: Exception, *, stopping: bool = False) -> float:
        """Says what went wrong, once per pause, and returns the pause: doubling from 1 s up to a minute.

        Once a stop is asked (``stopping``), failures are no longer counted and the pause is the first one.
        """
        pause = _ERROR_PAUSE if stopping else min(_ERROR_PAUSE * 2.0 ** min(self._failures, 16), _MAX_ERROR_PAUSE)
        if not stopping:
            self._failures += 1
        path = self._store.path
        room = write_failure(path, exc)
        if room is not None:
            logger.error(
                "The local queue cannot write %s (%s): %s. Outcomes not recorded yet are kept; trying again in %g s.",
                path,
                exc,
                room,
                pause,
            )
        elif is_corrupt(exc):
            logger.error("%s Trying again in %g s.", corruption_message(path, exc), pause)
        elif isinstance(exc, sqlite3.Error):
            logger.error("The local queue's database %s failed (%s); trying again in %g s.", path, exc, pause)
        else:
            logger.exception("The local queue's dispatcher failed; trying again in %g s", pause)
        return pause

    def _sleep(self, timeout: float, *, pause: bool = False) -> None:
        """Sleeps until there is work, another process commits to the file, or ``timeout`` passes.

        With ``pause`` (after a storage error) only a stop ends it early.
        """
        end = time.monotonic() + timeout
        while True:
            with self._cond:
                if self._stopping:
                    break
                if not pause and (
                    self._results or self._look or (self._kicked and self._in_flight < self._concurrency)
                ):
                    break
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, _WATCH))
            if not pause and self._changed_elsewhere():
                break
        with self._cond:
            kicked, self._kicked = self._kicked, False
            self._look = False
        if kicked and self._in_flight and not self._stopping:
            # Workers are busy: let a few more enqueues gather, to claim them in one go.
            time.sleep(_GATHER)

    def _changed_elsewhere(self) -> bool:
        """Whether another connection committed to the file since the last look (and a worker is free)."""
        if self._in_flight >= self._concurrency:
            return False
        try:
            version = self._store.data_version()
        except sqlite3.Error:
            return False
        changed = self._seen_version is not None and version != self._seen_version
        self._seen_version = version
        return changed

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

        clock = time.monotonic()

        def allowance(queue: str) -> int:
            return self._bucket(queue, clock).allowance(clock)

        def record_and_claim(settlements: Sequence[Settlement]) -> None:
            for r in results:  # what is settled is no longer in flight, for the queues' limits
                self._bucket(r.queue, clock).in_flight -= 1
            try:
                tasks[:] = self._store.claim(
                    self.owner,
                    free,
                    now=now,
                    lease_until=now + self._lease,
                    on_lost=self._lost_attempt_policy(lost),
                    settle=settlements,
                    allowance=allowance,
                    blocked=[q for q, b in self._buckets.items() if b.allowance(clock) <= 0],
                )
            except BaseException:
                for r in results:
                    self._bucket(r.queue, clock).in_flight += 1
                raise

        self._settle(results, record=record_and_claim)
        if lost:
            self._report_lost(lost, now)
        for index, task in enumerate(tasks):
            self._in_flight += 1
            bucket = self._bucket(task.queue, clock)
            bucket.in_flight += 1
            bucket.tokens -= 1
            try:
                self._pool.submit(self._job(task, deliverer))
            except RuntimeError:  # the pool was shut down (stop() ran out of time) while this turn claimed
                self._give_back(tasks[index:], deliverer, counted=1)
                break
        if results and not self._in_flight:  # join() waits for nothing in flight: no use waking it before
            self._notify_changed()
        if len(tasks) == free:
            return self._poll
        wake = self._store.next_wake(self.owner)
        waits = [w for w in (b.wait() for b in self._buckets.values()) if w is not None]
        timeout = min(max(wake - time.time(), _MIN_SLEEP), self._poll) if wake is not None else self._poll
        return float(min([timeout, *(max(w, _MIN_SLEEP) for w in waits)]))

    def _bucket(self, queue: str, clock: float) -> _Bucket:
        bucket = self._buckets.get(queue)
        if bucket is None:
            bucket = self._buckets[queue] = _Bucket(self._limits_for(queue), clock)
        return bucket

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
                self._counters.count_end("gave-up")
                self._record_dead_letter_of_stored(lost.queue, lost.name)
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
                    sent = attempt_headers(task, self._keyring())
                    outcome = deliverer.deliver(task.url, task.body, sent, deadline)
                except Exception as exc:
                    logger.exception("Delivering task %s of queue %s failed unexpectedly", task.name, task.queue)
                    outcome = Outcome(None, f"INTERNAL_ERROR: {type(exc).__name__}")
                finally:
                    _delivering.dispatcher = None
            finished = _Finished(task, outcome, time.time(), _full_url(deliverer, task.url))
            with self._cond:
                self._results.append(finished)
                # The last delivery in flight to end records the outcomes and claims the next tasks itself, on
                # its thread: waking the dispatcher thread for it costs more than the turn (the dispatcher
                # thread still wakes for any other outcome, and takes over when this turn cannot be run).
                last = len(self._results) >= self._in_flight and not self._stopping and not self._failures
                if not last:
                    self._cond.notify()
            if last and not self._turn_here(deliverer):
                with self._cond:
                    self._look = True
                    self._cond.notify()

        return deliver

    def _give_back(self, tasks: Sequence[ClaimedTask], deliverer: Deliverer, *, counted: int) -> None:
        """Hands claimed tasks that no worker will deliver back to be recorded as not attempted (released).

        They count as in flight until recorded (the first ``counted`` already do), so that the dispatcher, or
        its drain after a stop, records them, and no attempt is charged for them.
        """
        clock = time.monotonic()
        for task in tasks[counted:]:
            self._in_flight += 1
            self._bucket(task.queue, clock).in_flight += 1
        logger.warning(
            "The local queue stopped while claiming %d task(s); they are given back, not attempted.", len(tasks)
        )
        now = time.time()
        with self._cond:
            self._results.extend(_Finished(task, None, now, _full_url(deliverer, task.url)) for task in tasks)
            self._cond.notify()

    def _turn_here(self, deliverer: Deliverer) -> bool:
        """Runs a turn (record the outcomes, claim for the free workers) on this worker thread, if none is running.

        Returns:
            False when the dispatcher thread must look: a turn was running, the turn failed (the outcomes are
            kept for the next), or it left workers free (the dispatcher thread then sleeps until the next due time).
        """
        if not self._turn.acquire(blocking=False):
            return False
        try:
            if self._stopping or self._failures:
                return False
            self._dispatch(self._take_results())
            return self._in_flight >= self._concurrency
        except Exception:
            logger.debug("A turn on a worker thread failed; the dispatcher thread takes over", exc_info=True)
            return False
        finally:
            self._turn.release()

    def _settle(
        self, results: list[_Finished], *, record: Callable[[Sequence[Settlement]], object] | None = None
    ) -> None:
        """Records the outcome of attempts (with ``record``, by default the store's ``settle``)."""
        judged = [self._judge(r) for r in results]
        try:
            if record is not None:
                record([settlement for settlement, _, _ in judged])
            else:
                self._store.settle(self.owner, [settlement for settlement, _, _ in judged])
        except Exception:
            with self._cond:  # keep them to record on the next turn
                self._results[:0] = results
            raise
        for r, (_, kind, log) in zip(results, judged, strict=True):
            if log is not None:  # once recorded: a line says what happened, not what was about to
                log()
            if kind == "gave-up" and r.outcome is not None:
                error = r.outcome.detail or r.outcome.error or "the queue gave up (its retry limit)"
                self._record_dead_letter(
                    DeadLetter(r.name, r.queue, r.url, r.body, "gave-up", r.attempt, error, dict(r.headers))
                )
        kinds = [kind for _, kind, _ in judged]
        self._counters.delivered += kinds.count("delivered")
        self._counters.retried += kinds.count("retried")
        for settlement, kind, _ in judged:
            if kind in ("gave-up", "ended"):
                self._counters.count_end(settlement.state)
        if record is None:  # (record_and_claim counts them itself, before it claims)
            clock = time.monotonic()
            for r in results:
                self._bucket(r.queue, clock).in_flight -= 1
        self._in_flight -= len(results)
        if results and record is None:  # (after a claim, _dispatch wakes join() only once nothing is in flight)
            self._notify_changed()

    def _notify_changed(self) -> None:
        """Wakes :meth:`LocalTransport.join`."""
        with self._changed:
            self._changed.notify_all()

    def _judge(self, r: _Finished) -> tuple[Settlement, str, Callable[[], None] | None]:
        """What to record of an attempt, what kind of end it is, and the line to log once it is recorded.

        The kind is ``released`` (not attempted), ``delivered``, ``ended`` (the endpoint
        ended it: failed, gave up, dropped), ``retried`` or ``gave-up`` (by the queue's retry policy).
        """
        outcome = r.outcome
        if outcome is None:
            return Settlement(r.id, r.attempt, "queued", 0.0, None, None, False, r.finished, True), "released", None
        if outcome.ok:
            ended = outcome.outcome in DEAD_OUTCOMES  # the endpoint ended it and recorded its dead letter
            state = cast(TaskState, outcome.outcome) if ended else "done"
            # An ended task's last error is what the endpoint said, as for any other failed attempt.
            error = (outcome.detail or f"{state}: HTTP {outcome.status}").splitlines()[0][:200] if ended else None
            settlement = Settlement(
                r.id,
                r.attempt,
                state,
                0.0,
                outcome.status,
                error,
                True,
                r.finished,
                False,
                outcome.outcome,
                outcome.detail,
            )
            return settlement, "ended" if ended else "delivered", None
        retry_at = self._retry_at(r.queue, r.retry_options, r.attempt, r.first_attempt, now=r.finished)
        settlement = Settlement(
            r.id,
            r.attempt,
            "gave-up" if retry_at is None else "queued",
            0.0 if retry_at is None else retry_at,
            outcome.status,
            outcome.error,
            outcome.executed,
            r.finished,
            False,
            outcome.outcome,
            outcome.detail,
        )
        if retry_at is None:
            return settlement, "gave-up", self._gave_up_line(r, outcome)
        return settlement, "retried", self._retry_line(r, outcome, retry_at)

    @staticmethod
    def _gave_up_line(r: _Finished, outcome: Outcome) -> Callable[[], None]:
        where = r.where or r.url

        def log() -> None:
            logger.error(
                "Task %s of queue %s (POST %s) failed after %d attempt(s); last status %s (%s). Giving up: it is "
                "kept as gave-up (`im-task queue show %s`, `im-task queue retry %s`).",
                r.name,
                r.queue,
                where,
                r.attempt,
                outcome.status if outcome.status is not None else "none",
                outcome.error,
                r.name,
                r.name,
            )

        return log

    @staticmethod
    def _retry_line(r: _Finished, outcome: Outcome, retry_at: float) -> Callable[[], None]:
        where = r.where or r.url
        hint = _HINTS.get(outcome.status or 0, "").format(url=where) or None
        if outcome.outcome == "retry":  # the task asked for it (SingularTaskFailure's 408): nothing is wrong
            hint = None
        elif hint is None and outcome.status is not None and 400 <= outcome.status < 500:
            hint = "the app refused the request itself; see its log"

        def log() -> None:
            if hint is None:
                logger.info(
                    "Task %s of queue %s (POST %s) failed (%s); retry %d in %.3g s.",
                    r.name,
                    r.queue,
                    where,
                    outcome.error,
                    r.attempt,
                    retry_at - r.finished,
                )
            else:
                logger.warning(
                    "Task %s of queue %s (POST %s) was refused (%s): %s. Retry %d in %.3g s.",
                    r.name,
                    r.queue,
                    where,
                    outcome.error,
                    hint,
                    r.attempt,
                    retry_at - r.finished,
                )

        return log

    def _record_dead_letter(self, letter: DeadLetter) -> None:
        """Records a task the queue gave up on in the dead-letter store, if there is one; never raises."""
        if self._dead_letters is None:
            return
        try:
            self._dead_letters.record(letter)
        except Exception:
            logger.exception("Could not record task %s of queue %s as a dead letter", letter.name, letter.queue)

    def _record_dead_letter_of_stored(self, queue: str, name: str) -> None:
        """Records a stored task the queue gave up on (a lost lease) as a dead letter."""
        if self._dead_letters is None:
            return
        try:
            [detail] = self._store.detail(name, queue=queue)
        except (ValueError, sqlite3.Error):
            logger.exception("Could not read task %s of queue %s to record it as a dead letter", name, queue)
            return
        info = detail.info
        error = f"{info.last_error}: its delivery's process died or stalled (attempt {info.attempts})"
        self._record_dead_letter(
            DeadLetter(name, queue, info.url, detail.body, "gave-up", info.attempts, error, detail.headers)
        )

    def _drain(self) -> None:
        """After a stop: waits for the deliveries in flight and records them."""
        while self._in_flight:
            with self._cond:
                if not self._results:
                    self._cond.wait(self._lease / 3)
                results, self._results = self._results, []
            try:
                if results:
                    with self._turn:
                        self._settle(results)
                elif self._in_flight:
                    self._store.renew(self.owner, lease_until=time.time() + self._lease)
            except Exception:
                if not self._store.closed:
                    logger.exception("Could not record the last deliveries; their leases will run out")
                return


def _full_url(deliverer: Deliverer, url: str) -> str:
    """The URL a task is delivered to: the base URL of an HTTP deliverer, then the task's path."""
    base = getattr(deliverer, "base_url", None)
    return f"{base.rstrip('/')}{url}" if isinstance(base, str) else url


def _call_logged(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        logger.exception("A local queue callback failed after its dispatcher stopped")
