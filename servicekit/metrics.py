"""A small Prometheus client: counters, gauges and histograms with labels, rendered in text format 0.0.4.

Stdlib only, shared by the gateway and the provider. Values live in a *store*, an array of doubles that each
labelled series owns a slice of:

* :class:`LocalStore` (the default) is a growable array in this process.
* :class:`SharedStore` is anonymous shared memory created before worker processes are forked. Every worker
  writes only its own region (no lock on the request path); a new series is entered in a table all workers share
  (under a lock, once per series and process), and :meth:`Registry.render` sums each series over the workers.
  Gauges are summed too, so in a shared store they suit inc/dec use (in-flight counts), not ``set``.

Use::

    registry = Registry()
    requests = registry.counter("provider_http_requests_total", "Requests.", ("code", "method", "path"))
    requests.labels("200", "GET", "/system/functions").inc()
    text = registry.render()  # serve with CONTENT_TYPE

``labels()`` caches its children, so the request path costs one dict lookup and one or three float additions.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing
import struct
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, TypeAlias

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# Prometheus' default histogram buckets (client_golang DefBuckets).
DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_SEP: Final = "\x00"  # between the metric name and the label values in a series key


class LocalStore:
    """Values in this process only."""

    __slots__ = ("_index", "values")

    def __init__(self) -> None:
        self.values: array[float] = array("d")
        self._index: dict[str, tuple[int, int]] = {}

    def allocate(self, key: str, size: int) -> int:
        known = self._index.get(key)
        if known is not None:
            return known[0]
        offset = len(self.values)
        self.values.extend([0.0] * size)
        self._index[key] = (offset, size)
        return offset

    def series(self) -> Iterator[tuple[str, int, int]]:
        for key, (offset, size) in list(self._index.items()):
            yield key, offset, size

    def total(self, offset: int) -> float:
        return self.values[offset]


class SharedStore:
    """Values in anonymous shared memory, one region per forked worker; create it before forking.

    Layout of the table mapping: a header (series count, next free offset), then ``max_series`` entries of
    ``offset, size, key length, key bytes``. The values mapping holds ``workers`` regions of ``region``
    doubles. Past ``max_series`` series or ``region`` doubles, new series are counted into a scratch area that
    is never rendered (``dropped`` says how many were refused).
    """

    _HEADER = struct.Struct("<QQ")
    _ENTRY = struct.Struct("<IIH")
    KEY_MAX: Final = 246  # bytes of key per entry; longer keys are cut (label values are short names)
    _ENTRY_SIZE: Final = 256

    __slots__ = (
        "_base",
        "_index",
        "_lock",
        "_seen",
        "_table",
        "_values_mem",
        "dropped",
        "max_series",
        "region",
        "values",
        "workers",
    )

    def __init__(self, workers: int, *, max_series: int = 16384, region: int = 1 << 18) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.max_series = max_series
        self.region = region
        self._table = mmap.mmap(-1, self._HEADER.size + max_series * self._ENTRY_SIZE)
        # One scratch slot area beyond each region's end (64 doubles) takes the writes of refused series.
        self._values_mem = mmap.mmap(-1, workers * (region + 64) * 8)
        self.values: memoryview[float] = memoryview(self._values_mem).cast("d")
        self._lock = multiprocessing.get_context("fork").Lock()
        self._index: dict[str, tuple[int, int]] = {}
        self._seen = 0  # table entries already copied into _index
        self._base = 0
        self.dropped = 0

    def select_worker(self, worker: int) -> None:
        """Write into ``worker``'s region from now on (call in the worker right after the fork)."""
        if not 0 <= worker < self.workers:
            raise ValueError(f"worker {worker} outside 0..{self.workers - 1}")
        self._base = worker * (self.region + 64)

    def allocate(self, key: str, size: int) -> int:
        known = self._index.get(key)
        if known is None:
            with self._lock:
                self._sync()
                known = self._index.get(key)
                if known is None:
                    known = self._append(key, size)
        if known[0] < 0:
            return self._base + self.region  # the scratch area
        return self._base + known[0]

    def _append(self, key: str, size: int) -> tuple[int, int]:
        count, next_offset = self._HEADER.unpack_from(self._table, 0)
        if count >= self.max_series or next_offset + size > self.region or size > 64:
            self.dropped += 1
            return (-1, size)
        raw = key.encode("utf-8", "replace")[: self.KEY_MAX]
        position = self._HEADER.size + count * self._ENTRY_SIZE
        self._ENTRY.pack_into(self._table, position, next_offset, size, len(raw))
        self._table[position + self._ENTRY.size : position + self._ENTRY.size + len(raw)] = raw
        self._HEADER.pack_into(self._table, 0, count + 1, next_offset + size)  # publish after the entry
        self._sync()
        entry = self._index[key] = (next_offset, size)
        return entry

    def _sync(self) -> None:
        count, _ = self._HEADER.unpack_from(self._table, 0)
        for i in range(self._seen, count):
            position = self._HEADER.size + i * self._ENTRY_SIZE
            offset, size, length = self._ENTRY.unpack_from(self._table, position)
            start = position + self._ENTRY.size
            key = self._table[start : start + length].decode("utf-8", "replace")
            self._index[key] = (offset, size)
        self._seen = count

    def series(self) -> Iterator[tuple[str, int, int]]:
        with self._lock:
            self._sync()
            items = list(self._index.items())
        for key, (offset, size) in items:
            yield key, offset, size

    def total(self, offset: int) -> float:
        stride = self.region + 64
        view = self.values
        return math.fsum(view[w * stride + offset] for w in range(self.workers))


Store: TypeAlias = LocalStore | SharedStore
Values: TypeAlias = "array[float] | memoryview[float]"


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Metric:
    kind = "untyped"
    _size = 1

    def __init__(self, store: Store, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._store = store
        self._children: dict[tuple[str, ...], int] = {}

    def _index(self, values: tuple[str, ...]) -> int:
        index = self._children.get(values)
        if index is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values!r}")
            key = self.name + _SEP + _SEP.join(v.replace(_SEP, " ") for v in values)
            index = self._children[values] = self._store.allocate(key, self._size)
        return index

    def forget_children(self) -> None:
        """Drop the cached indexes (after the store switched to another worker's region)."""
        self._children.clear()

    def samples(self) -> dict[tuple[str, ...], float]:
        """Label values → value, summed over workers (counters and gauges)."""
        prefix = self.name + _SEP
        out: dict[tuple[str, ...], float] = {}
        for key, offset, _size in self._store.series():
            if key.startswith(prefix):
                out[_split_labels(key, prefix, len(self.labelnames))] = self._store.total(offset)
        return out

    def render(self, lines: list[str]) -> None:
        lines.append(f"# HELP {self.name} {_escape_help(self.help)}")
        lines.append(f"# TYPE {self.name} {self.kind}")
        for values, value in sorted(self.samples().items()):
            lines.append(f"{self.name}{_labels_text(self.labelnames, values)} {_format_value(value)}")


def _split_labels(key: str, prefix: str, count: int) -> tuple[str, ...]:
    if not count:
        return ()
    return tuple(key[len(prefix) :].split(_SEP))


class Counter(_Metric):
    kind = "counter"

    def labels(self, *values: str) -> CounterChild:
        return CounterChild(self._store.values, self._index(values))


class CounterChild:
    __slots__ = ("_index", "_values")

    def __init__(self, values: Values, index: int) -> None:
        self._values = values
        self._index = index

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._values[self._index] += amount


class Gauge(_Metric):
    kind = "gauge"

    def labels(self, *values: str) -> GaugeChild:
        return GaugeChild(self._store.values, self._index(values))


class GaugeChild:
    __slots__ = ("_index", "_values")

    def __init__(self, values: Values, index: int) -> None:
        self._values = values
        self._index = index

    def inc(self, amount: float = 1.0) -> None:
        self._values[self._index] += amount

    def dec(self, amount: float = 1.0) -> None:
        self._values[self._index] -= amount

    def set(self, value: float) -> None:
        self._values[self._index] = value


class Histogram(_Metric):
    """Bucket counts (not cumulative) then sum then count, per series; rendered cumulative."""

    kind = "histogram"

    def __init__(
        self,
        store: Store,
        name: str,
        help_text: str,
        labelnames: Sequence[str],
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        bounds = tuple(float(b) for b in buckets if not math.isinf(b))
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be increasing, got {buckets!r}")
        if "le" in labelnames:
            raise ValueError(f"{name}: 'le' is reserved for buckets")
        super().__init__(store, name, help_text, labelnames)
        self.buckets = bounds
        self._size = len(bounds) + 2

    def labels(self, *values: str) -> HistogramChild:
        return HistogramChild(self._store.values, self._index(values), self.buckets)

    def render(self, lines: list[str]) -> None:
        lines.append(f"# HELP {self.name} {_escape_help(self.help)}")
        lines.append(f"# TYPE {self.name} histogram")
        prefix = self.name + _SEP
        rows: list[tuple[tuple[str, ...], int]] = []
        for key, offset, _size in self._store.series():
            if key.startswith(prefix):
                rows.append((_split_labels(key, prefix, len(self.labelnames)), offset))
        n = len(self.buckets)
        for values, offset in sorted(rows):
            cumulative = 0.0
            for i, bound in enumerate(self.buckets):
                cumulative += self._store.total(offset + i)
                le = f'le="{_format_value(bound)}"'
                lines.append(
                    f"{self.name}_bucket{_labels_text(self.labelnames, values, le)} {_format_value(cumulative)}"
                )
            count = self._store.total(offset + n + 1)
            inf = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{_labels_text(self.labelnames, values, inf)} {_format_value(count)}")
            total = self._store.total(offset + n)
            lines.append(f"{self.name}_sum{_labels_text(self.labelnames, values)} {_format_value(total)}")
            lines.append(f"{self.name}_count{_labels_text(self.labelnames, values)} {_format_value(count)}")


class HistogramChild:
    __slots__ = ("_buckets", "_index", "_values")

    def __init__(self, values: Values, index: int, buckets: tuple[float, ...]) -> None:
        self._values = values
        self._index = index
        self._buckets = buckets

    def observe(self, value: float) -> None:
        values = self._values
        index = self._index
        i = bisect_left(self._buckets, value)  # the first bound >= value (le is inclusive)
        n = len(self._buckets)
        if i < n:
            values[index + i] += 1.0
        values[index + n] += value
        values[index + n + 1] += 1.0


Collect = Callable[[], Iterable[tuple[Sequence[str], float]]]


class CallbackGauge:
    """A gauge whose samples are computed when rendered (e.g. replica counts from a table)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str], collect: Collect) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._collect = collect

    def forget_children(self) -> None:
        return None

    def render(self, lines: list[str]) -> None:
        lines.append(f"# HELP {self.name} {_escape_help(self.help)}")
        lines.append(f"# TYPE {self.name} gauge")
        for values, value in sorted((tuple(v), x) for v, x in self._collect()):
            lines.append(f"{self.name}{_labels_text(self.labelnames, values)} {_format_value(value)}")


class Registry:
    """The metrics of one component, in registration order."""

    def __init__(self, store: Store | None = None) -> None:
        self.store: Store = store if store is not None else LocalStore()
        self._metrics: list[_Metric | CallbackGauge] = []
        self._names: set[str] = set()

    def _add(self, metric: _Metric | CallbackGauge) -> None:
        if metric.name in self._names:
            raise ValueError(f"metric {metric.name} registered twice")
        self._names.add(metric.name)
        self._metrics.append(metric)

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = Counter(self.store, name, help_text, labelnames)
        self._add(metric)
        return metric

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = Gauge(self.store, name, help_text, labelnames)
        self._add(metric)
        return metric

    def histogram(
        self, name: str, help_text: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        metric = Histogram(self.store, name, help_text, labelnames, buckets)
        self._add(metric)
        return metric

    def callback_gauge(self, name: str, help_text: str, labelnames: Sequence[str], collect: Collect) -> CallbackGauge:
        metric = CallbackGauge(name, help_text, labelnames, collect)
        self._add(metric)
        return metric

    def select_worker(self, worker: int) -> None:
        """In a forked worker: write into its own region of a :class:`SharedStore`."""
        if isinstance(self.store, SharedStore):
            self.store.select_worker(worker)
        for metric in self._metrics:
            metric.forget_children()

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            metric.render(lines)
        return "\n".join(lines) + "\n"
