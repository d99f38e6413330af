"""State shared by every worker process of one watchdog.

Created before the workers are forked, backed by anonymous shared memory, so all workers see one readiness
flag, count in-flight requests against one ``max_inflight`` and report one set of metrics. With one worker
there is no fork and the same objects are simply local.
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


# Prometheus' default histogram buckets, as of-watchdog's client_golang uses.
BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER")
_METHOD_INDEX: Final = {m: i for i, m in enumerate(METHODS)}
_CODES: Final = 500  # status 100..599
_SLOT: Final = len(BUCKETS) + 2  # bucket counts, then count, then sum
_REGION: Final = len(METHODS) * _CODES * _SLOT + 1  # + the in-flight gauge


class Metrics:
    """of-watchdog's function metrics, one lock-free region of doubles per worker, summed when rendered.

    Each worker writes only its own region, so there is no contention and no lock on the request path.
    """

    __slots__ = ("_mem", "_view", "workers")

    def __init__(self, workers: int) -> None:
        self.workers = workers
        size = workers * _REGION * 8
        self._mem = mmap.mmap(-1, size)
        self._view = memoryview(self._mem).cast("d")

    def recorder(self, worker: int) -> Recorder:
        return Recorder(self._view, worker * _REGION)

    def render(self) -> str:
        view = self._view
        lines = [
            "# HELP http_requests_in_flight Requests being served by the function.",
            "# TYPE http_requests_in_flight gauge",
            f"http_requests_in_flight {int(sum(view[w * _REGION + _REGION - 1] for w in range(self.workers)))}",
        ]
        totals: list[str] = []
        histogram: list[str] = []
        for m, method in enumerate(METHODS):
            for c in range(_CODES):
                offset = (m * _CODES + c) * _SLOT
                bases = [w * _REGION + offset for w in range(self.workers)]
                count = sum(view[b + len(BUCKETS)] for b in bases)
                if not count:
                    continue
                slot = [sum(view[b + i] for b in bases) for i in range(_SLOT)]
                labels = f'code="{c + 100}",method="{method}"'
                totals.append(f"http_requests_total{{{labels}}} {int(count)}")
                for bound, n in zip(BUCKETS, slot, strict=False):
                    histogram.append(f'http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {int(n)}')
                histogram.append(f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {int(count)}')
                histogram.append(f"http_request_duration_seconds_sum{{{labels}}} {slot[len(BUCKETS) + 1]!r}")
                histogram.append(f"http_request_duration_seconds_count{{{labels}}} {int(count)}")
        lines += [
            "# HELP http_requests_total Requests served by the function, by status code and method.",
            "# TYPE http_requests_total counter",
            *totals,
            "# HELP http_request_duration_seconds Time to serve a request to the function.",
            "# TYPE http_request_duration_seconds histogram",
            *histogram,
        ]
        return "\n".join(lines) + "\n"


class Recorder:
    """One worker's writer into :class:`Metrics`."""

    __slots__ = ("_base", "_view")

    def __init__(self, view: memoryview[float], base: int) -> None:
        self._view = view
        self._base = base

    def started(self) -> None:
        self._view[self._base + _REGION - 1] += 1

    def finished(self, method: str, code: int, seconds: float) -> None:
        view = self._view
        view[self._base + _REGION - 1] -= 1
        c = code - 100 if 100 <= code <= 599 else 500 - 100
        offset = self._base + (_METHOD_INDEX.get(method, len(METHODS) - 1) * _CODES + c) * _SLOT
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                view[offset + i] += 1
        view[offset + len(BUCKETS)] += 1
        view[offset + len(BUCKETS) + 1] += seconds
