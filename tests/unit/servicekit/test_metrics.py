"""servicekit.metrics: Prometheus text format 0.0.4, labels, histograms, and totals across forked workers."""

from __future__ import annotations

import os

import pytest

from servicekit.metrics import CONTENT_TYPE, DEFAULT_BUCKETS, Registry, SharedStore


def test_counter_and_gauge_render_with_escaped_labels() -> None:
    registry = Registry()
    requests = registry.counter("provider_http_requests_total", "Requests.\nSecond line", ("code", "method", "path"))
    requests.labels("200", "GET", "/system/functions").inc()
    requests.labels("200", "GET", "/system/functions").inc(2)
    requests.labels("500", "POST", 'a"b\\c\nd').inc()
    inflight = registry.gauge("in_flight", "In flight.")
    inflight.labels().inc(3)
    inflight.labels().dec()
    assert registry.render() == (
        "# HELP provider_http_requests_total Requests.\\nSecond line\n"
        "# TYPE provider_http_requests_total counter\n"
        'provider_http_requests_total{code="200",method="GET",path="/system/functions"} 3\n'
        'provider_http_requests_total{code="500",method="POST",path="a\\"b\\\\c\\nd"} 1\n'
        "# HELP in_flight In flight.\n"
        "# TYPE in_flight gauge\n"
        "in_flight 2\n"
    )
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    registry = Registry()
    seconds = registry.histogram("d_seconds", "Duration.", ("path",))
    child = seconds.labels("/x")
    for value in (0.001, 0.005, 0.3, 0.3, 20.0):
        child.observe(value)
    lines = registry.render().splitlines()
    buckets = {line.split('le="')[1].split('"')[0]: line.rsplit(" ", 1)[1] for line in lines if "_bucket" in line}
    assert list(buckets) == [*(["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"]), "+Inf"]
    assert buckets["0.005"] == "2"  # le is inclusive
    assert buckets["0.25"] == "2"
    assert buckets["0.5"] == "4"
    assert buckets["10"] == "4"
    assert buckets["+Inf"] == "5"
    assert 'd_seconds_sum{path="/x"} 20.606' in lines
    assert 'd_seconds_count{path="/x"} 5' in lines
    assert len(DEFAULT_BUCKETS) == 11


def test_wrong_label_count_and_negative_increments_are_refused() -> None:
    registry = Registry()
    counter = registry.counter("c_total", "C.", ("a",))
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels("x", "y")
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("x").inc(-1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.counter("c_total", "again")


def test_callback_gauge_and_samples() -> None:
    registry = Registry()
    registry.callback_gauge("replicas", "Replicas.", ("function_name",), lambda: [(("b.x",), 2.0), (("a.x",), 1.0)])
    counter = registry.counter("n_total", "N.", ("function_name", "code"))
    counter.labels("a.x", "200").inc(4)
    counter.labels("a.x", "500").inc(0.5)
    assert counter.samples() == {("a.x", "200"): 4.0, ("a.x", "500"): 0.5}
    text = registry.render()
    assert 'replicas{function_name="a.x"} 1\nreplicas{function_name="b.x"} 2\n' in text
    assert 'n_total{function_name="a.x",code="500"} 0.5' in text


def test_a_shared_store_sums_forked_workers_and_sees_their_new_series() -> None:
    registry = Registry(SharedStore(workers=3, max_series=64, region=1024))
    counter = registry.counter("calls_total", "Calls.", ("function_name",))
    seconds = registry.histogram("calls_seconds", "Time.", ("function_name",))
    pids = []
    for worker in range(3):
        pid = os.fork()
        if pid == 0:  # a worker: counts into its own region, series it names itself
            code = 1
            try:
                registry.select_worker(worker)
                for _ in range(100):
                    counter.labels("common.fn").inc()
                    seconds.labels("common.fn").observe(0.01)
                counter.labels(f"only-{worker}.fn").inc(worker + 1)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert counter.samples() == {("common.fn",): 300.0, ("only-0.fn",): 1.0, ("only-1.fn",): 2.0, ("only-2.fn",): 3.0}
    text = registry.render()
    assert 'calls_seconds_count{function_name="common.fn"} 300' in text
    assert 'calls_seconds_bucket{function_name="common.fn",le="0.01"} 300' in text


def test_a_full_shared_store_drops_new_series_instead_of_failing() -> None:
    store = SharedStore(workers=1, max_series=2, region=1024)
    registry = Registry(store)
    counter = registry.counter("c_total", "C.", ("k",))
    for key in "abc":
        counter.labels(key).inc()
    assert store.dropped == 1
    assert counter.samples() == {("a",): 1.0, ("b",): 1.0}
