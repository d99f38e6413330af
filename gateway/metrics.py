"""The gateway's Prometheus metrics, named and labelled as the OpenFaaS gateway's (gateway/metrics/metrics.go).

``function_name`` is ``<name>.<namespace>``. With several workers the values are in a
:class:`~servicekit.metrics.SharedStore` created before the fork, so ``/metrics`` and ``invocationCount`` show
totals across workers whichever worker answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from servicekit.metrics import CounterChild, HistogramChild, LocalStore, Registry, SharedStore

ServiceCounts = Callable[[], Iterable[tuple[Sequence[str], float]]]


class _FunctionSeries:
    """The children of one function, so the request path does one dict lookup per metric call."""

    __slots__ = ("by_code", "started")

    def __init__(self, started: CounterChild) -> None:
        self.started = started
        self.by_code: dict[int, tuple[CounterChild, HistogramChild]] = {}


class GatewayMetrics:
    def __init__(self, workers: int = 1) -> None:
        self.registry = Registry(SharedStore(workers) if workers > 1 else LocalStore())
        self.invocations = self.registry.counter(
            "gateway_function_invocation_total", "Function metrics", ("function_name", "code")
        )
        self.seconds = self.registry.histogram(
            "gateway_functions_seconds", "Function time taken", ("function_name", "code")
        )
        self.started = self.registry.counter(
            "gateway_function_invocation_started",
            "The total number of function HTTP requests started.",
            ("function_name",),
        )
        self._service_counts: ServiceCounts = list
        self.registry.callback_gauge(
            "gateway_service_count",
            "Current count of ready replicas for a function",
            ("function_name",),
            lambda: self._service_counts(),
        )
        self.registry.callback_gauge(
            "gateway_function_invocation_inflight",
            "Requests to a function started and not finished yet",
            ("function_name",),
            lambda: (((name,), value) for name, (_started, value) in self.load_totals().items()),
        )
        # Set by the autoscaler, which runs in one process: the other workers' regions stay 0, so the sum over
        # workers that /metrics shows is that process's value.
        self.desired = self.registry.gauge(
            "gateway_service_desired_replicas",
            "Replicas the autoscaler wants for a function",
            ("function_name",),
        )
        self.target_load = self.registry.gauge(
            "gateway_service_target_load",
            "Target load per replica of a function, in its scaling type's unit",
            ("function_name", "scaling_type"),
        )
        self.current_load = self.registry.gauge(
            "gateway_service_current_load",
            "Measured load of a function, all replicas together, in its scaling type's unit",
            ("function_name", "scaling_type"),
        )
        self._functions: dict[str, _FunctionSeries] = {}
        self.async_metrics = AsyncMetrics(self.registry)
        # The client connections (servicekit.client_limits calls these; pyfaasd's own names, no OpenFaaS twin).
        self.connections_open = self.registry.gauge("gateway_connections_open", "Client connections open")
        self.connections_refused = self.registry.counter(
            "gateway_connections_refused_total", "Client connections refused with 503 at the connection cap"
        )
        self.header_timeouts = self.registry.counter(
            "gateway_connections_header_timeout_total",
            "Client connections closed because a request head did not arrive within the header timeout",
        )
        self._bind_connection_series()

    def _bind_connection_series(self) -> None:
        self._open = self.connections_open.labels()
        self._refused = self.connections_refused.labels()
        self._header_timeouts = self.header_timeouts.labels()

    def follow_service_counts(self, collect: ServiceCounts) -> None:
        self._service_counts = collect

    def select_worker(self, worker: int) -> None:
        self.registry.select_worker(worker)
        self._functions.clear()
        self._bind_connection_series()

    def request_started(self, function: str) -> None:
        series = self._functions.get(function)
        if series is None:
            series = self._functions[function] = _FunctionSeries(self.started.labels(function))
        series.started.inc()

    def request_finished(self, function: str, code: int, seconds: float) -> None:
        series = self._functions.get(function)
        if series is None:
            series = self._functions[function] = _FunctionSeries(self.started.labels(function))
        children = series.by_code.get(code)
        if children is None:
            text = str(code)
            children = series.by_code[code] = (
                self.invocations.labels(function, text),
                self.seconds.labels(function, text),
            )
        children[0].inc()
        children[1].observe(seconds)

    def connection_opened(self) -> None:
        self._open.inc()

    def connection_closed(self) -> None:
        self._open.dec()

    def connection_refused(self) -> None:
        self._refused.inc()

    def header_timed_out(self) -> None:
        self._header_timeouts.inc()

    def invocation_counts(self) -> dict[str, float]:
        """function_name → invocations (all codes), across workers."""
        counts: dict[str, float] = {}
        for (function, _code), value in self.invocations.samples().items():
            counts[function] = counts.get(function, 0.0) + value
        return counts

    def load_totals(self) -> dict[str, tuple[float, float]]:
        """function_name → (requests started, requests in flight), across workers: the autoscaler's input."""
        finished = self.invocation_counts()
        return {
            function: (started, max(0.0, started - finished.get(function, 0.0)))
            for (function,), started in self.started.samples().items()
        }

    def render(self) -> str:
        return self.registry.render()


class AsyncMetrics:
    """The async queue's series, per ``function_name``.

    ``accepted`` is counted by whichever worker took the request; the others by the one process that dispatches
    (the gauges are set there only, so summing them over workers gives the right value).
    """

    def __init__(self, registry: Registry) -> None:
        self.accepted = registry.counter(
            "gateway_async_accepted_total", "Async requests accepted (202) into the queue", ("function_name",)
        )
        self.queue_depth = registry.gauge(
            "gateway_async_queue_depth",
            "Async calls waiting in the queue (due or waiting for a retry)",
            ("function_name",),
        )
        self.callback_depth = registry.gauge(
            "gateway_async_callback_queue_depth", "Async callbacks waiting to be sent", ("function_name",)
        )
        self.in_flight = registry.gauge(
            "gateway_async_in_flight", "Async calls being invoked right now", ("function_name",)
        )
        self.retries = registry.counter(
            "gateway_async_retries_total", "Async invocations scheduled for another attempt", ("function_name",)
        )
        self.finished = registry.counter(
            "gateway_async_finished_total",
            "Async calls finished, by outcome (done or failed)",
            ("function_name", "status"),
        )
        self.failures = registry.counter(
            "gateway_async_failures_total",
            "Async calls that ended failed (retries exhausted or not retried)",
            ("function_name",),
        )
        self.callbacks = registry.counter(
            "gateway_async_callbacks_total",
            "Callback attempts by result (delivered, retried, failed)",
            ("function_name", "result"),
        )
        self._depths: set[str] = set()

    def set_depths(self, queued: dict[str, int], callbacks: dict[str, int]) -> None:
        for function in self._depths - queued.keys() - callbacks.keys():
            self.queue_depth.labels(function).set(0)
            self.callback_depth.labels(function).set(0)
        for function in queued.keys() | callbacks.keys():
            self.queue_depth.labels(function).set(queued.get(function, 0))
            self.callback_depth.labels(function).set(callbacks.get(function, 0))
        self._depths = set(queued) | set(callbacks)
