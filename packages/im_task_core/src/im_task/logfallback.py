"""Logging handlers of im-task's own that never change where an application's log records go.

Python prints a warning on stderr (its "last resort") only while no handler
at all is attached along a logger's hierarchy: any handler im-task attaches
for its own use would silence it. Two kinds of handler here step aside instead:

* a *passive* handler (:class:`PassiveHandler`) keeps records for im-task's
  own use and prints the record as Python would have, when it is the only
  handler along the way;
* a *fallback* handler (:class:`FallbackHandler`, the ``im-task`` command's
  stderr) prints only when the application attached no handler of its own,
  so that a record is never printed twice.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["FallbackHandler", "PassiveHandler", "has_other_handler"]


def has_other_handler(record: logging.LogRecord, *, besides: logging.Handler) -> bool:
    """Whether a handler that is neither ``besides`` nor passive is attached along ``record``'s logger chain.

    The chain is the one :meth:`logging.Logger.callHandlers` walks: the
    record's logger, then its parents while ``propagate`` is true. Like
    Python, it counts a handler whatever its level.

    Args:
        record: The record.
        besides: The handler asking.

    Returns:
        True when another handler would see the record.

    Raises:
        TypeError: ``record`` is not a log record, or ``besides`` not a handler.
    """
    if not isinstance(record, logging.LogRecord) or not isinstance(besides, logging.Handler):
        raise TypeError(f"has_other_handler() takes a LogRecord and a Handler, not {record!r} and {besides!r}")
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        if any(h is not besides and not isinstance(h, PassiveHandler) for h in logger.handlers):
            return True
        logger = logger.parent if logger.propagate else None
    return False


class PassiveHandler(logging.Handler):
    """A handler that keeps records for im-task's use and leaves their printing as it was.

    Subclasses implement :meth:`keep`. When no other handler is attached along
    the record's chain, the record goes to :data:`logging.lastResort`, as it
    would have without this handler (passive handlers do not count as others,
    and the first of them along the chain prints it).

    Args:
        level: The least level of the records kept.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Keeps the record, then prints it as Python would have without this handler."""
        self.keep(record)
        last_resort = logging.lastResort
        if (
            last_resort is not None
            and record.levelno >= last_resort.level
            and self._first_passive(record)
            and not has_other_handler(record, besides=self)
        ):
            last_resort.handle(record)

    def keep(self, record: logging.LogRecord) -> None:
        """Keeps what it needs of ``record``; the default keeps nothing."""

    def _first_passive(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            for handler in logger.handlers:
                if isinstance(handler, PassiveHandler):
                    return handler is self
            logger = logger.parent if logger.propagate else None
        return True


class FallbackHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes records to a stream only when the application attached no handler of its own along their chain.

    On a terminal, it first clears the line, which a progress line may hold.

    Args:
        stream: Where to write; ``sys.stderr`` (looked up at each record) when None.
        level: The least level written.
    """

    def __init__(self, stream: TextIO | None = None, level: int = logging.NOTSET) -> None:
        super().__init__(stream)
        self._given = stream
        self.setLevel(level)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        """Writes the record, unless another handler takes it."""
        if has_other_handler(record, besides=self):
            return
        if self._given is None:
            self.setStream(sys.stderr)  # the one in force now (tests and tools replace it)
        try:
            if self.stream.isatty():
                self.stream.write("\r\x1b[2K")
        except (AttributeError, ValueError, OSError):
            pass
        super().emit(record)
