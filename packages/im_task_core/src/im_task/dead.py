"""Working with dead letters: find one, show what it would call, replay it, purge them.

The ``im-task dead`` commands and the Django admin's "replay" action use
these; the dead-letter store in force is :func:`im_task.stores.deadletters.get_dead_letter_store`.

Example:
    >>> from im_task.dead import find_letter, replay
    >>> replay(find_letter("task-1", queue="emails"))  # doctest: +SKIP
    'a1b2c3...'
"""

from __future__ import annotations

import logging
import reprlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from im_task.config import get_keyring, get_settings
from im_task.deadletter import DeadLetter, DeadLetterStore
from im_task.envelope import CONTENT_TYPE, PayloadReference, unseal
from im_task.errors import ConfigurationError, Error, SignatureError
from im_task.reruns import RERUN_HEADER, rerun_headers
from im_task.runtime import get_transport
from im_task.serialization import loads_call
from im_task.stores.base import get_payload_store, load_payload
from im_task.stores.deadletters import get_dead_letter_store
from im_task.transports.base import TaskRequest, Transport

__all__ = [
    "DeadLetterError",
    "Description",
    "describe",
    "find_letter",
    "forget_payload",
    "purge",
    "replay",
    "safe_repr",
    "store_in_force",
]

logger = logging.getLogger("im_task")

#: Longest text :func:`safe_repr` returns.
MAX_REPR = 2000
_RERUN = RERUN_HEADER.lower()


class DeadLetterError(Error):
    """A dead letter cannot be found, shown or replayed; the message says why and what to do."""


@dataclass(frozen=True)
class Description:
    """What a dead letter's body would call, decoded after its signature verified.

    Attributes:
        function: The function's dotted name, or ``""`` when the body could not be decoded.
        arguments: The arguments in a safe, truncated repr, e.g. ``"('a@example.com',), {'retry': True}"``.
        expires: When the signed envelope stops being accepted (seconds since the epoch), or None.
        note: Why the call could not be shown, or ``""``.
    """

    function: str
    arguments: str
    expires: int | None = None
    note: str = ""


def store_in_force() -> DeadLetterStore:
    """The dead-letter store in force.

    Raises:
        DeadLetterError: ``dead_letter_store`` is ``"none"``.
        ConfigurationError: The setting cannot be made into a store.
    """
    store = get_dead_letter_store()
    if store is None:
        raise DeadLetterError(
            "dead_letter_store is 'none': no dead letters are kept. Set IM_TASK_DEAD_LETTER_STORE (or "
            "configure(dead_letter_store=...)) to 'local' or 'ndb'."
        )
    return store


def find_letter(name: str, queue: str | None = None, *, store: DeadLetterStore | None = None) -> DeadLetter:
    """The dead letter of a task, by its name (and queue, when several queues hold that name).

    Args:
        name: The task's name.
        queue: Its queue, or None to look in every queue.
        store: Where to look; the store in force when None.

    Returns:
        The dead letter.

    Raises:
        DeadLetterError: There is none, or several queues hold one of that name and ``queue`` is None.
        ValueError: ``name`` is not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a task name, not {name!r}.")
    source = store or store_in_force()
    if queue is not None:
        letter = source.get(queue, name)
        if letter is None:
            raise DeadLetterError(f"no dead letter of task {name!r} on queue {queue!r} (see 'im-task dead list').")
        return letter
    found = [letter for letter in source.list() if letter.name == name]
    if not found:
        raise DeadLetterError(f"no dead letter of task {name!r} (see 'im-task dead list').")
    if len(found) > 1:
        queues = ", ".join(sorted(repr(letter.queue) for letter in found))
        raise DeadLetterError(f"dead letters of task {name!r} are on queues {queues}: name one with --queue.")
    return found[0]


def safe_repr(value: object, limit: int = MAX_REPR) -> str:
    """A repr for a person: nested and long values shortened, a failing ``__repr__`` survived, at most ``limit`` chars.

    Args:
        value: Anything.
        limit: Longest result.

    Returns:
        The repr.
    """
    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = 200
    shortener.maxlevel = 4
    shortener.maxlist = shortener.maxtuple = shortener.maxdict = shortener.maxset = 20
    text = shortener.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(letter: DeadLetter) -> Description:
    """What a dead letter's body would call, decoded only once its signature verified with the keyring in force.

    Decoding unpickles: it imports the task's module (the code is not run).
    A body whose signature does not verify is never decoded.

    Args:
        letter: The dead letter.

    Returns:
        The function and its arguments, or a note saying why they cannot be shown.

    Raises:
        TypeError: ``letter`` is not a ``DeadLetter``.
    """
    if not isinstance(letter, DeadLetter):
        raise TypeError(f"describe() takes a DeadLetter, not {type(letter).__name__}.")
    try:
        opened = unseal(letter.body, get_keyring())
    except SignatureError as exc:
        return Description("", "", note=f"not decoded: the signature does not verify with the secrets in force ({exc})")
    except ConfigurationError as exc:
        return Description("", "", note=f"not decoded: {exc}")
    expires = opened.binding.expires if opened.binding is not None else None
    try:
        data = opened.payload
        if isinstance(data, PayloadReference):
            data = load_payload(data, get_payload_store())
        call = loads_call(data)
    except Exception as exc:  # a module that no longer imports, a payload gone: show what is known
        return Description("", "", expires, note=f"not decoded: {type(exc).__name__}: {exc}")
    func: Any = call.func
    inner = getattr(func, "func", func)  # a TaskFunction's own function
    module, qualname = getattr(inner, "__module__", None), getattr(inner, "__qualname__", None)
    name = f"{module}.{qualname}" if module and qualname else call.description or safe_repr(inner, 200)
    arguments = safe_repr(call.args) + ", " + safe_repr(call.kwargs)
    return Description(name, arguments, expires)


def replay(
    letter: DeadLetter, *, store: DeadLetterStore | None = None, transport: Transport | None = None
) -> str | None:
    """Enqueues a dead letter's task again, under a new name, then forgets the letter.

    The same signed body is sent to the same URL and queue with the task's
    own headers, through the transport in force; the queue names the new
    task. The letter is deleted only once the queue accepted the task.
    The task also carries a signed :data:`~im_task.reruns.RERUN_HEADER`, so
    that a task that keeps a final state of its own (a Django ``TaskResult``
    that is ``FAILED``) runs again rather than taking it for a duplicate.

    Args:
        letter: The dead letter.
        store: Where it is kept; the store in force when None.
        transport: Where to enqueue; the transport in force when None.

    Returns:
        The new task's name (None when the queue does not tell it).

    Raises:
        DeadLetterError: Its signature does not verify with the secrets in force, or its envelope expired
            (the endpoint would refuse it).
        EnqueueError: The queue refused it (the letter is kept).
        TypeError: ``letter`` is not a ``DeadLetter``.
    """
    if not isinstance(letter, DeadLetter):
        raise TypeError(f"replay() takes a DeadLetter, not {type(letter).__name__}.")
    try:
        opened = unseal(letter.body, get_keyring())
    except SignatureError as exc:
        raise DeadLetterError(
            f"task {letter.name!r} of queue {letter.queue!r} cannot be replayed: its signature does not verify "
            f"with the secrets in force ({exc}). Configure the secret it was signed with (a rotated-out one may "
            "stay in the list of secrets, after the first)."
        ) from None
    binding = opened.binding
    url = binding.path if binding is not None and binding.path else letter.url  # the path without a mount prefix
    lifetime = get_settings().envelope_lifetime
    refusal = (
        binding.refusal(path=unquote(url), queue=letter.queue, deferred=True, lifetime=lifetime)
        if binding is not None
        else None
    )
    if refusal is not None:
        raise DeadLetterError(
            f"task {letter.name!r} of queue {letter.queue!r} cannot be replayed: the endpoint would refuse it, as "
            f"{refusal}. Enqueue the call again from your code, then purge the letter."
        )
    headers = {"Content-Type": CONTENT_TYPE}
    headers.update({k: v for k, v in letter.headers.items() if k.lower() not in ("content-type", _RERUN)})
    headers.update(rerun_headers())
    request = TaskRequest(queue=letter.queue, url=url, body=letter.body, headers=headers)
    name = (transport or get_transport()).enqueue(request)
    (store or store_in_force()).delete(letter.queue, letter.name)
    logger.info("Replayed dead task %r of queue %r as task %r.", letter.name, letter.queue, name)
    return name


def purge(queue: str | None = None, *, store: DeadLetterStore | None = None) -> int:
    """Forgets the dead letters of one queue or of all, and the stored payloads of those that had one.

    Args:
        queue: The queue, or None for every queue.
        store: Where they are kept; the store in force when None.

    Returns:
        How many letters were forgotten.

    Raises:
        ValueError: ``queue`` is neither None nor a queue name.
    """
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ValueError(f"queue must be a queue name or None for every queue, not {queue!r}.")
    source = store or store_in_force()
    for letter in source.list(queue):
        forget_payload(letter)
    return source.purge(queue)


def forget_payload(letter: DeadLetter) -> None:
    """Deletes the stored payload a dead letter's body refers to, if any; never raises (logs at WARNING).

    Args:
        letter: A dead letter about to be forgotten without being replayed.
    """
    try:
        opened = unseal(letter.body, get_keyring())
        if isinstance(opened.payload, PayloadReference):
            get_payload_store().delete(opened.payload.key)
    except SignatureError:
        return  # not ours to delete: a body that does not verify names nothing we trust
    except Exception:
        logger.warning("Could not delete the stored payload of dead task %r.", letter.name, exc_info=True)
