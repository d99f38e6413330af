"""The benches' reading of wrk's report, and the ratios they derive from it (no timing: text in, numbers out)."""

from __future__ import annotations

import pytest

from bench.support import Comparison, WrkRun, median_run, parse_wrk

# wrk 4.1 -t1 -c4 --latency against a server answering 404, as printed.
NOT_FOUND = """Running 1s test @ http://127.0.0.1:18999/nope
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.58ms    1.56ms  17.27ms   88.69%
    Req/Sec     1.57k   224.86     1.85k    60.00%
  Latency Distribution
     50%    2.22ms
     75%    2.98ms
     90%    4.03ms
     99%    9.37ms
  1559 requests in 1.00s, 791.86KB read
  Non-2xx or 3xx responses: 1559
Requests/sec:   1556.75
Transfer/sec:    790.72KB
"""

# Microseconds and seconds in one distribution, and socket errors.
MIXED = """Running 5s test @ http://127.0.0.1:8080/function/bench
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  300.00us   1.20s    95.00%
    Req/Sec    20.00k     1.00k   22.00k    70.00%
  Latency Distribution
     50%  452.00us
     75%    1.02ms
     90%    1.50ms
     99%    1.20s
  100123 requests in 5.00s, 10.00MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
Requests/sec:  20024.51
Transfer/sec:      2.00MB
"""


def test_a_report_gives_totals_latency_in_ms_and_failures() -> None:
    run = parse_wrk(NOT_FOUND)
    assert run == WrkRun(
        requests=1559,
        rps=1556.75,
        latency_ms={"50": 2.22, "75": 2.98, "90": 4.03, "99": 9.37},
        non_2xx=1559,
        socket_errors=0,
    )
    assert run.failed == 1559


def test_microseconds_and_seconds_become_ms_and_socket_errors_add_up() -> None:
    run = parse_wrk(MIXED)
    assert run.latency_ms == {"50": 0.452, "75": 1.02, "90": 1.5, "99": 1200.0}
    assert (run.non_2xx, run.socket_errors, run.failed) == (0, 6, 6)
    assert run.requests == 100123


def test_the_thread_stats_lines_are_not_read_as_percentiles() -> None:
    # "Latency 2.58ms ... 88.69%" ends in a percent too; only the distribution counts.
    assert set(parse_wrk(NOT_FOUND).latency_ms) == {"50", "75", "90", "99"}


def test_summary_is_the_shape_the_benches_print() -> None:
    run = parse_wrk(MIXED)
    assert run.summary() == {"rps": 20024.5, "p50_ms": 0.452, "p90_ms": 1.5, "p99_ms": 1200.0, "non_2xx": 0}
    assert list(run.summary(("50", "99"), requests=True)) == ["rps", "requests", "p50_ms", "p99_ms", "non_2xx"]


def test_a_failed_wrk_is_an_error_not_zeros() -> None:
    with pytest.raises(ValueError, match="not a wrk report"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_the_median_run_is_kept_by_its_own_measure() -> None:
    runs = [{"rps": 3.0, "p50_ms": 9.0}, {"rps": 1.0, "p50_ms": 1.0}, {"rps": 2.0, "p50_ms": 5.0}]
    assert median_run(runs, "rps") == {"rps": 2.0, "p50_ms": 5.0}
    assert median_run(runs[:2], "p50_ms") == {"rps": 3.0, "p50_ms": 9.0}  # of two, the upper


def test_ratios_and_added_latency_are_against_the_named_baseline() -> None:
    results = {
        "nginx": {"c32": {"rps": 100_000.0}, "c1": {"p50_ms": 0.08}},
        "ours": {"c32": {"rps": 12_000.0}, "c1": {"p50_ms": 0.3}},
        "go": {"c32": {"rps": 10_000.0}, "c1": {"p50_ms": 0.25}},
    }
    compare = Comparison(results)
    assert compare.rps_ratio("ours", "go") == 1.2
    assert compare.added_ms("ours", "nginx") == 0.22
    assert compare.added_ms("go", "nginx") == 0.17
