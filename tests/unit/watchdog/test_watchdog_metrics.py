"""watchdog.metrics: of-watchdog's series on servicekit's registry, summed over forked workers."""

from __future__ import annotations

import os
import re

import pytest

from watchdog.metrics import FunctionMetrics as Metrics


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in:\n{text}"
    return float(match.group(1))


def test_metrics_sum_every_workers_region() -> None:
    metrics = Metrics(workers=3)
    for worker in range(3):
        recorder = metrics.recorder(worker)
        recorder.started()
        recorder.finished("GET", 200, 0.003)
    metrics.recorder(1).finished("POST", 502, 0.2)
    metrics.recorder(1).started()  # one request still in flight
    text = metrics.render()
    assert _sample(text, 'http_requests_total{code="200",method="GET"}') == 3
    assert _sample(text, 'http_requests_total{code="502",method="POST"}') == 1
    assert _sample(text, 'http_request_duration_seconds_bucket{code="200",method="GET",le="0.005"}') == 3
    assert _sample(text, 'http_request_duration_seconds_bucket{code="502",method="POST",le="0.1"}') == 0
    assert _sample(text, 'http_request_duration_seconds_bucket{code="502",method="POST",le="0.25"}') == 1
    assert _sample(text, 'http_request_duration_seconds_count{code="200",method="GET"}') == 3
    assert _sample(text, 'http_request_duration_seconds_sum{code="200",method="GET"}') == pytest.approx(0.009)
    assert _sample(text, "http_requests_in_flight") == 0


def test_metrics_written_in_a_forked_child_are_seen_by_the_parent() -> None:
    metrics = Metrics(workers=2)
    pid = os.fork()
    if pid == 0:
        metrics.recorder(1).finished("PUT", 201, 0.5)
        os._exit(0)
    os.waitpid(pid, 0)
    assert 'http_requests_total{code="201",method="PUT"} 1' in metrics.render()


def test_unknown_methods_and_codes_are_counted_not_lost() -> None:
    metrics = Metrics(workers=1)
    metrics.recorder(0).finished("PROPFIND", 207, 0.01)
    metrics.recorder(0).finished("GET", 999, 0.01)
    text = metrics.render()
    assert 'http_requests_total{code="207",method="OTHER"} 1' in text
    assert 'http_requests_total{code="500",method="GET"} 1' in text
