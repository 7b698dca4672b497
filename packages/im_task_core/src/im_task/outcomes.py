"""What the endpoint does once a task's outcome is decided: say what happened, and keep the dead ones.

The endpoint (:func:`im_task.executor.serve`) hands every response to a
task whose signature verified to :func:`settle`, which

* records a :class:`~im_task.deadletter.DeadLetter` in the dead-letter store
  in force when the outcome is ``failed``, ``gave-up`` or ``dropped``: the
  signed body as delivered, the last error (a traceback, or a one-line
  reason), the attempts, the task's queue, name, path and own headers;
* forgets the dead letter of a task asked for again (a replay, a queue
  retry: see :mod:`im_task.reruns`) once it ran, so that it is not replayed
  a second time;
* logs one INFO line on the ``im_task.outcomes`` logger (unless
  ``log_outcomes`` is off), e.g.
  ``Task 'send-1' of queue 'emails' failed permanently on attempt 3 ...``;
  a task may add to it, or say it did not run its work, with :func:`note_outcome`.

Neither ever changes the response: a store that fails is logged at WARNING
and the queue still gets the endpoint's answer. Refused requests (bad
signature, wrong caller) never come here.

Example:
    >>> import logging
    >>> logging.getLogger("im_task.outcomes").setLevel(logging.WARNING)  # or configure(log_outcomes=False)
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from im_task.config import get_settings
from im_task.context import get_queue_name, get_task_name
from im_task.deadletter import DEAD_OUTCOMES, DeadLetter
from im_task.headers import TaskHeaders, forwardable_headers
from im_task.reruns import RERUN_HEADER, rerun_time
from im_task.response import TaskResponse
from im_task.stores.deadletters import get_dead_letter_store

__all__ = [
    "OUTCOME_LOGGER",
    "Delivered",
    "keeps_payload",
    "last_error",
    "needs_settling",
    "note_outcome",
    "own_headers",
    "settle",
]

#: The logger of the outcome lines, a child of ``im_task``.
OUTCOME_LOGGER = "im_task.outcomes"
logger = logging.getLogger("im_task")
outcome_logger = logging.getLogger(OUTCOME_LOGGER)

#: Request headers that are never the task's own: credentials, and what proxies and clients add.
_NOT_THE_TASKS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "user-agent",
        "accept",
        "accept-encoding",
        "forwarded",
        "via",
        "x-real-ip",
        "x-cloud-trace-context",
        "traceparent",
        "tracestate",
    }
)
_MAX_REASON = 300
#: What the running task said of itself (:func:`note_outcome`): its queue, its name, the note, whether it skipped.
_note: ContextVar[tuple[str, str, str, bool] | None] = ContextVar("im_task_outcome_note", default=None)


@dataclass(frozen=True)
class Delivered:
    """What the endpoint knows of a delivery whose signature verified.

    Attributes:
        task: The queue's task headers.
        path: The request path.
        body: The body, exactly as delivered (the signed envelope).
        headers: The task's own headers: those its envelope signed, or else the request's that are
            neither the queue's, the connection's, credentials nor a proxy's (see :func:`own_headers`).
        seconds: How long the endpoint took to decide, from opening the body to the response.
        request: The request's headers as received (a re-run's mark is read there), or None.
    """

    task: TaskHeaders
    path: str
    body: bytes
    headers: Mapping[str, str]
    seconds: float
    request: Mapping[str, str] | None = None


def note_outcome(note: str, *, skipped: bool = False) -> None:
    """Adds a note to the outcome line of the task running now, or says it did not run its work (a duplicate).

    A task that keeps a state of its own (Django's task runner) tells the
    person reading the log which record it updated, or why this delivery
    left it alone: ``ran on attempt 1 ...: Django task app.tasks.send (result 3f2a...): SUCCESSFUL``;
    with ``skipped``, the line says ``was not run again`` instead of ``ran``. Outside a task it does nothing.

    Args:
        note: One line for a person.
        skipped: The delivery did not run the task's work (it was answered all the same).

    Raises:
        TypeError: ``note`` is not a string.
    """
    if not isinstance(note, str):
        raise TypeError(f"note must be a str, not {type(note).__name__}.")
    name, queue = get_task_name(), get_queue_name()
    if name is not None and queue is not None:
        _note.set((queue, name, " ".join(note.split()), bool(skipped)))


def _take_note(task: TaskHeaders) -> tuple[str, bool] | None:
    """The note the task made of itself on this delivery, if any; it is forgotten either way."""
    note = _note.get()
    if note is None:
        return None
    _note.set(None)
    queue, name, text, skipped = note
    return (text, skipped) if (queue, name) == (task.queue_name, task.task_name) else None


def own_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers that may be the task's own: not the queue's, the connection's, credentials or a proxy's.

    Args:
        headers: The request headers.

    Returns:
        The headers a replay may send again.
    """
    return {
        name: value
        for name, value in forwardable_headers(headers).items()
        if name.lower() not in _NOT_THE_TASKS and not name.lower().startswith("x-forwarded-")
    }


def keeps_payload(response: TaskResponse) -> bool:
    """Whether a finished task's stored payload must be kept: its dead letter is to be recorded, to replay.

    Args:
        response: The endpoint's response to a task whose payload is in the payload store.

    Returns:
        True for a dead outcome while a dead-letter store is in force (the payload store's sweep
        deletes the payload once it is older than its orphan age; ``im-task dead purge`` at once).
    """
    if response.outcome not in DEAD_OUTCOMES:
        return False
    try:
        return get_dead_letter_store() is not None
    except Exception:  # a store that cannot be made records nothing: nothing to keep the payload for
        return False


def needs_settling(response: TaskResponse, headers: Mapping[str, str] | None = None) -> bool:
    """Whether :func:`settle` has anything to do for ``response``: a dead letter to record or forget, or a line to log.

    The endpoint asks before it gathers what :func:`settle` takes, so that a
    task that ran costs nothing here while the outcome lines are off (the
    ``im_task.outcomes`` logger below INFO, or ``log_outcomes=False``).

    Args:
        response: What the endpoint decided.
        headers: The request's headers: a re-run that ran has a dead letter to forget.
    """
    if response.outcome in DEAD_OUTCOMES:
        return True
    if response.outcome == "ran" and headers is not None and RERUN_HEADER in headers:
        return True
    if outcome_logger.isEnabledFor(logging.INFO) and get_settings().log_outcomes:
        return True
    if _note.get() is not None:
        _note.set(None)  # nothing will read it
    return False


def settle(response: TaskResponse, delivered: Delivered) -> TaskResponse:
    """Records a dead letter for a dead outcome and logs the outcome line; returns ``response`` unchanged.

    Args:
        response: What the endpoint decided.
        delivered: The delivery it answers.

    Returns:
        ``response``, always (nothing here raises).
    """
    try:
        note = _take_note(delivered.task)
        kept = _record(response, delivered) if response.outcome in DEAD_OUTCOMES else False
        forgot = _forget(delivered) if response.outcome == "ran" and not (note and note[1]) else False
        if get_settings().log_outcomes and outcome_logger.isEnabledFor(logging.INFO):
            _log(response, delivered, kept, note, forgot)
    except Exception:  # pragma: no cover - the response stands whatever happens here
        logger.warning("Could not settle the outcome of task %r.", delivered.task.task_name, exc_info=True)
    return response


def _record(response: TaskResponse, delivered: Delivered) -> bool:
    """Keeps the dead letter; whether it was kept (False with no store, or when the store failed)."""
    task = delivered.task
    try:
        store = get_dead_letter_store()
        if store is None:
            return False
        store.record(
            DeadLetter(
                name=task.task_name,
                queue=task.queue_name,
                url=delivered.path,
                body=delivered.body,
                outcome=response.outcome,
                attempts=task.retry_count + 1,
                error=last_error(response),
                headers=dict(delivered.headers),
            )
        )
    except Exception:
        logger.warning(
            "Could not record task %r of queue %r as a dead letter; the queue was answered all the same.",
            task.task_name,
            task.queue_name,
            exc_info=True,
        )
        return False
    return True


def _forget(delivered: Delivered) -> bool:
    """Forgets the dead letter of a task asked for again that ran; whether there was one."""
    if delivered.request is None or rerun_time(delivered.request) is None:
        return False
    task = delivered.task
    try:
        store = get_dead_letter_store()
        return store is not None and bool(store.delete(task.queue_name, task.task_name))
    except Exception:
        logger.warning(
            "Could not forget the dead letter of task %r of queue %r, which ran when asked for again.",
            task.task_name,
            task.queue_name,
            exc_info=True,
        )
        return False


def last_error(response: TaskResponse) -> str:
    """A dead letter's last error: the reason the endpoint gave, then the traceback of its exception, if any.

    Args:
        response: The endpoint's response.

    Returns:
        Text for a person.
    """
    reason = response.body.decode("utf-8", "replace").strip()
    exc = response.exception
    if exc is None:
        return reason
    return reason + "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def _reason(response: TaskResponse) -> str:
    exc = response.exception
    text = f"{type(exc).__name__}: {exc}" if exc is not None else response.body.decode("utf-8", "replace").strip()
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _log(response: TaskResponse, delivered: Delivered, kept: bool, note: tuple[str, bool] | None, forgot: bool) -> None:
    task = delivered.task
    attempt = task.retry_count + 1
    where = (task.task_name, task.queue_name, delivered.path)
    dead = "; kept as a dead letter (im-task dead show)" if kept else ""
    outcome = response.outcome
    told = f": {note[0]}" if note and note[0] else ""
    if outcome == "ran" and note and note[1]:
        outcome_logger.info(
            "Task %r of queue %r (%r) was not run again on attempt %d (answered as done)%s.", *where, attempt, told
        )
    elif outcome == "ran":
        gone = "; its dead letter was forgotten" if forgot else ""
        outcome_logger.info(
            "Task %r of queue %r (%r) ran on attempt %d in %.3f s%s%s.", *where, attempt, delivered.seconds, told, gone
        )
    elif outcome == "retry":
        outcome_logger.info(
            "Task %r of queue %r (%r) failed on attempt %d in %.3f s and is answered %d, so the queue retries it "
            "unless its own retry limit is used up: %r",
            *where,
            attempt,
            delivered.seconds,
            response.status,
            _reason(response),
        )
    else:
        verb = {"failed": "failed permanently", "gave-up": "was given up", "dropped": "was dropped"}.get(
            outcome, outcome
        )
        outcome_logger.info(
            "Task %r of queue %r (%r) %s on attempt %d in %.3f s; it will not be retried%s: %r%s",
            *where,
            verb,
            attempt,
            delivered.seconds,
            dead,
            _reason(response),
            f" ({note[0]})" if note and note[0] else "",
        )
