"""A small pool of daemon threads that run jobs handed to them.

Unlike ``concurrent.futures``, its threads are daemons that never hold up the
interpreter's exit, so a hung task handler cannot keep a process alive; the
queue's leases take care of tasks cut short that way.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

__all__ = ["WorkerPool"]

logger = logging.getLogger("im_task.local")

Job = Callable[[], None]


class WorkerPool:
    """Runs jobs on up to ``size`` daemon threads, started as they are needed.

    Args:
        size: Most threads.
        name: Prefix of the threads' names.
    """

    def __init__(self, size: int, *, name: str = "im-task-worker") -> None:
        self.size = size
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Job) -> None:
        """Queues a job; a thread runs it as soon as one is free.

        Raises:
            RuntimeError: The pool was shut down.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.size:
                thread = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads) + 1}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except BaseException:  # a job must never kill its thread
                logger.exception("A local queue worker job failed")
            with self._lock:
                self._idle += 1

    def shutdown(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Lets queued jobs finish, then stops the threads; later calls only wait.

        Args:
            wait: Whether to wait for the threads to end.
            timeout: Most seconds to wait for each thread.
        """
        with self._lock:
            first = not self._closed
            self._closed = True
            threads = list(self._threads)
        if first:
            for _ in threads:
                self._jobs.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join(timeout)
