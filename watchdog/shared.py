"""State shared by every worker process of one watchdog.

Created before the workers are forked, backed by anonymous shared memory, so all workers see one readiness
flag and count in-flight requests against one ``max_inflight`` (the metrics are ``watchdog/metrics.py``, on
servicekit's shared store). With one worker there is no fork and the same objects are simply local.
"""

from __future__ import annotations

import mmap
import multiprocessing
from typing import Final

# Flag bytes in the shared flags page.
_READY: Final = 0  # the function can take requests (http mode: fprocess accepts connections)
_DRAINING: Final = 1  # SIGTERM received: health and readiness say 503


class Flags:
    """Readiness and draining, shared across forked workers."""

    __slots__ = ("_mem",)

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, mmap.PAGESIZE)

    @property
    def ready(self) -> bool:
        return self._mem[_READY] == 1

    @ready.setter
    def ready(self, value: bool) -> None:
        self._mem[_READY] = 1 if value else 0

    @property
    def draining(self) -> bool:
        return self._mem[_DRAINING] == 1

    @draining.setter
    def draining(self, value: bool) -> None:
        self._mem[_DRAINING] = 1 if value else 0

    @property
    def healthy(self) -> bool:
        return self.ready and not self.draining


class Limiter:
    """``max_inflight`` as a non-blocking counter; a process-shared semaphore when there are several workers."""

    __slots__ = ("_local", "_sem", "limit")

    def __init__(self, limit: int, shared: bool) -> None:
        self.limit = limit
        self._local = 0
        self._sem = multiprocessing.get_context("fork").BoundedSemaphore(limit) if limit and shared else None

    def try_acquire(self) -> bool:
        if not self.limit:
            return True
        if self._sem is not None:
            return self._sem.acquire(block=False)
        if self._local >= self.limit:
            return False
        self._local += 1
        return True

    def release(self) -> None:
        if not self.limit:
            return
        if self._sem is not None:
            self._sem.release()
        else:
            self._local -= 1

    @property
    def full(self) -> bool:
        if not self.limit:
            return False
        if self._sem is not None:
            return self._sem.get_value() == 0
        return self._local >= self.limit
