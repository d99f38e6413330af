"""The function's metrics, with of-watchdog's names, on servicekit's Prometheus registry.

``http_requests_total{code,method}``, ``http_request_duration_seconds{code,method}`` (Prometheus' default
buckets, as of-watchdog's client_golang) and ``http_requests_in_flight``, served on ``metrics_port``. With several
workers the values live in a :class:`~servicekit.metrics.SharedStore` made before the fork, each worker writing
its own region, so ``/metrics`` shows totals whichever process renders it.

Methods outside the common set are counted as ``OTHER`` and status codes outside 100-599 as 500, so a client
cannot grow the number of series.
"""

from __future__ import annotations

from typing import Final

from servicekit.metrics import CONTENT_TYPE, CounterChild, HistogramChild, LocalStore, Registry, SharedStore

METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
__all__ = ["CONTENT_TYPE", "FunctionMetrics", "Recorder"]


class FunctionMetrics:
    """The metrics of one watchdog; create it before forking workers."""

    def __init__(self, workers: int) -> None:
        self.registry = Registry(SharedStore(workers) if workers > 1 else LocalStore())
        self.in_flight = self.registry.gauge("http_requests_in_flight", "Requests being served by the function.")
        self.total = self.registry.counter(
            "http_requests_total", "Requests served by the function, by status code and method.", ("code", "method")
        )
        self.seconds = self.registry.histogram(
            "http_request_duration_seconds", "Time to serve a request to the function.", ("code", "method")
        )

    def recorder(self, worker: int) -> Recorder:
        """The writer of worker ``worker`` (call it in that worker, after the fork)."""
        self.registry.select_worker(worker)
        return Recorder(self)

    def render(self) -> str:
        return self.registry.render()


class Recorder:
    """One worker's writer: the children of each (method, code) are looked up once."""

    __slots__ = ("_in_flight", "_metrics", "_series")

    def __init__(self, metrics: FunctionMetrics) -> None:
        self._metrics = metrics
        self._in_flight = metrics.in_flight.labels()
        self._series: dict[tuple[str, int], tuple[CounterChild, HistogramChild]] = {}

    def started(self) -> None:
        self._in_flight.inc()

    def finished(self, method: str, code: int, seconds: float) -> None:
        self._in_flight.dec()
        if method not in METHODS:
            method = "OTHER"
        if not 100 <= code <= 599:
            code = 500
        series = self._series.get((method, code))
        if series is None:
            labels = (str(code), method)
            series = (self._metrics.total.labels(*labels), self._metrics.seconds.labels(*labels))
            self._series[(method, code)] = series
        series[0].inc()
        series[1].observe(seconds)
