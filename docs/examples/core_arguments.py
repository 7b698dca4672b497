"""What happens to arguments that are not plain values: files, locks, and the local queue's counts.

``ImmediateTransport`` runs each call at once through the whole path
(serialise, sign, verify, run), so the script sees what the task received.
It exits with status 0 only if every check holds.
"""

import contextlib
import dataclasses
import io
import socket
import sqlite3
import threading
from pathlib import Path

from im_task import EnqueueError, configure, task
from im_task.transports import ImmediateTransport, LocalTransport

configure(transport=ImmediateTransport())
received = []


@task
def count_lines(notes):
    received.append(notes)


Path("notes.txt").write_text("first line\nsecond line\n", encoding="utf-8")

# [start files]
with open("notes.txt", encoding="utf-8") as notes:  # text mode, for reading
    notes.readline()
    count_lines(notes)  # enqueued: the task gets a copy of the contents, not the file

copy = received[0]
assert isinstance(copy, io.StringIO)  # an in-memory copy, made at the call
assert copy.read() == "second line\n"  # at the position the file had
Path("notes.txt").write_text("changed later\n", encoding="utf-8")
assert copy.getvalue() == "first line\nsecond line\n"  # later changes to the file do not reach it

for mode in ("rb", "w", "a"):  # binary files, and files opened for writing, are refused at the call
    with open("notes.txt", mode) as notes:
        try:
            count_lines(notes)
        except EnqueueError as exc:
            print(exc)  # ... argument 0 (<_io.BufferedReader name='notes.txt'>) cannot be pickled: ...
        else:
            raise AssertionError(f"a file opened with mode {mode!r} was enqueued")

with socket.socket() as sock, contextlib.closing(sqlite3.connect(":memory:")) as connection:
    for live in (threading.Lock(), sock, connection):  # so are locks, sockets, database connections
        try:
            count_lines(live)
        except EnqueueError as exc:
            print(exc)  # Cannot enqueue /_ah/task/__main__/count_lines: argument 0 (<unlocked _thread.lock ...
        else:
            raise AssertionError(f"{live!r} was enqueued")
# [end files]
assert len(received) == 1

# [start stats]
with LocalTransport("queue.sqlite3", autostart=False) as queue:
    stats = queue.stats()  # a frozen dataclass of counts, read by attribute
    assert (stats.queued, stats.due, stats.running, stats.done, stats.failed) == (0, 0, 0, 0, 0)
    assert dataclasses.asdict(stats)["queued"] == 0  # asdict() when a mapping is needed
    try:
        stats["queued"]  # not a mapping
    except TypeError:
        pass
    else:
        raise AssertionError("QueueStats is a mapping")
# [end stats]
print("files, locks and stats behave as documented")
