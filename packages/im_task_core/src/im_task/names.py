"""Names defined once: the rules for queue and task names, and the default file names.

Example:
    >>> from im_task.names import QUEUE_NAME, did_you_mean
    >>> bool(QUEUE_NAME.fullmatch("mail-1"))
    True
    >>> did_you_mean("IM_TASK_SECRTE", ["IM_TASK_SECRET", "IM_TASK_ROUTE"])
    " (did you mean 'IM_TASK_SECRET'?)"
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from collections.abc import Iterable

__all__ = [
    "ProcessSequence",
    "DEFAULT_DATA_DIR",
    "DEFAULT_QUEUE",
    "ENV_PREFIX",
    "QUEUE_FILE",
    "QUEUE_NAME",
    "QUEUE_NAME_RULE",
    "TASK_NAME",
    "TASK_NAME_RULE",
    "did_you_mean",
]

#: A Cloud Tasks queue id.
QUEUE_NAME = re.compile(r"[A-Za-z0-9-]{1,100}")
QUEUE_NAME_RULE = "1 to 100 of A-Z, a-z, 0-9 and '-'"
#: A Cloud Tasks task id.
TASK_NAME = re.compile(r"[A-Za-z0-9_-]{1,500}")
TASK_NAME_RULE = "1 to 500 of A-Z, a-z, 0-9, '_' and '-'"
#: The queue of tasks that name none, unless ``default_queue`` says otherwise.
DEFAULT_QUEUE = "default"
#: Where the local queue, the local secret and local payloads live, unless ``data_dir`` says otherwise.
DEFAULT_DATA_DIR = ".im_task"
#: The local queue's SQLite file, in the data directory.
QUEUE_FILE = "queue.sqlite3"
#: Prefix of im-task's environment variables (and of Flask's ``app.config`` keys).
ENV_PREFIX = "IM_TASK_"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """A hint naming the known word closest to a misspelt one, or ``""`` when none is close.

    Words are compared in upper case and without the prefix they share
    (``IM_TASK_``), which would make unrelated names look alike.

    Args:
        word: The unknown word.
        known: The words it may have meant.

    Returns:
        ``" (did you mean 'X'?)"`` or ``""``.
    """
    candidates = list(known)
    prefix = _shared_prefix([word.upper(), *(k.upper() for k in candidates)])
    stripped = {k.upper()[len(prefix) :]: k for k in candidates}
    rest = word.upper()[len(prefix) :]
    close = difflib.get_close_matches(rest, list(stripped), n=1, cutoff=0.6)
    if not close:  # a longer or shorter spelling of a known word: ENVIRONMENT for ENV
        close = [k for k in stripped if len(k) >= 3 and len(rest) >= 3 and (k.startswith(rest) or rest.startswith(k))]
    return f" (did you mean {stripped[close[0]]!r}?)" if close else ""


def _shared_prefix(words: list[str]) -> str:
    """The longest prefix every word starts with."""
    shortest = min(words, key=len)
    for length, char in enumerate(shortest):
        if any(word[length] != char for word in words):
            return shortest[:length]
    return shortest


class ProcessSequence:
    """Names unique across processes and time, cheap to make: a random prefix per process, then a counter.

    The prefix is drawn again in a forked child, so that it never repeats its
    parent's names. As unique as a random name made each time (``os.urandom``
    per name), without a system call per name, and in order within a
    process (neighbouring pages of an index). ``f"{seq.prefix}{next(seq.counter):08x}"``
    makes one; the counter never wraps (the number grows wider after 2**32).

    Args:
        prefix_bytes: Random bytes in the prefix (its hex is twice as long).

    Attributes:
        prefix: The prefix, in hex.
        prefix_bytes: The prefix as ASCII bytes.
        counter: The process's counter (``next()`` it).
    """

    __slots__ = ("_size", "counter", "prefix", "prefix_bytes")

    def __init__(self, prefix_bytes: int) -> None:
        self._size = prefix_bytes
        self.prefix = ""
        self.prefix_bytes = b""
        self.counter: itertools.count[int] = itertools.count()
        self.renew()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        """Draws a new prefix and restarts the counter."""
        self.prefix = os.urandom(self._size).hex()
        self.prefix_bytes = self.prefix.encode()
        self.counter = itertools.count()

    def next_name(self) -> str:
        """A new name: the prefix and the counter's next value, in hex (8 digits or more)."""
        return f"{self.prefix}{next(self.counter):08x}"
