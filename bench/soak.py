"""The gateway under hostile clients: 10,000 idle connections and 500 slow-header clients while a load runs.

One gateway (``python -m gateway``, one worker, default limits: header timeout 10 s, idle timeout 75 s,
connection cap half the open-file limit) in front of nginx, ``/function/bench`` resolved through a hosts file
the bench writes (as bench/gateway.py). In the same run:

1. **baseline**: ``wrk -t1 -c32 --latency`` on ``/function/bench`` for ``--duration`` seconds, no other client;
2. **hostile**: a second process opens ``--idle`` connections that send nothing and ``--slow`` clients that send
   a never-ending request head one byte a second (a slowloris; each reconnects when the gateway closes it), and
   then the same wrk load runs while they stay connected.

Reported (JSON): requests, success rate (2xx without socket errors) and latency p50/p99 of both loads and their
ratio; how many idle connections were still open at the end (the idle timeout is longer than the run); how long
the slow clients lived (the header timeout); the gateway's connection metrics and its resident memory before and
with the hostile clients. Bounded: about twice the duration + 15 s. The bench raises its own open-file limit (root
may raise the hard one) so that the clients, the gateway and wrk have descriptors enough.

Run: ``.venv/bin/python bench/soak.py [--duration 10] [--idle 10000] [--slow 500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import (
    FUNCTION,
    Target,
    ensure_tools,
    gateway,
    gateway_state,
    metrics_text,
    nginx,
    rss_mib,
    wrk,
)

OPEN_FILES_WANTED = 65536
SLOW_HEAD = b"GET /function/bench HTTP/1.1\r\nHost: soak\r\nX-Slow: "  # then "a" forever, never the blank line


# -- the hostile clients (run as a separate process: python bench/soak.py --hostile PORT) ---------------------


class _Held(asyncio.Protocol):
    """A client connection that records when the server closed it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.opened = time.monotonic()
        self.closed: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.closed.done():
            self.closed.set_result(time.monotonic() - self.opened)


async def _connect(port: int) -> _Held:
    loop = asyncio.get_running_loop()
    _, held = await loop.create_connection(_Held, "127.0.0.1", port)
    return held


async def _hostile(port: int, idle: int, slow: int, every_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    gate = asyncio.Semaphore(256)
    failures = 0

    async def open_idle() -> _Held | None:
        nonlocal failures
        async with gate:
            try:
                return await _connect(port)
            except OSError:
                failures += 1
                return None

    lifetimes: list[float] = []
    slow_connects = 0

    async def slow_client() -> None:
        nonlocal slow_connects, failures
        while not stop.is_set():
            try:
                held = await _connect(port)
            except OSError:
                failures += 1
                await asyncio.sleep(every_s)
                continue
            slow_connects += 1
            assert held.transport is not None
            held.transport.write(SLOW_HEAD)
            while not held.closed.done() and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(held.closed), every_s)
                if not held.closed.done():
                    held.transport.write(b"a")
            if held.closed.done():
                lifetimes.append(held.closed.result())
            else:
                held.transport.close()

    started = time.monotonic()
    idle_held = [h for h in await asyncio.gather(*(open_idle() for _ in range(idle))) if h is not None]
    slow_tasks = [asyncio.create_task(slow_client()) for _ in range(slow)]
    while slow_connects < slow and time.monotonic() - started < 60:
        await asyncio.sleep(0.05)
    _say(
        event="ready",
        idle_open=len(idle_held),
        slow_connected=slow_connects,
        failures=failures,
        seconds=round(time.monotonic() - started, 2),
    )
    await stop.wait()
    await asyncio.gather(*slow_tasks)
    idle_closed = sorted(h.closed.result() for h in idle_held if h.closed.done())
    for held in idle_held:
        if held.transport is not None:
            held.transport.close()
    _say(
        event="done",
        idle_opened=len(idle_held),
        idle_closed_by_gateway=len(idle_closed),
        slow_connects=slow_connects,
        slow_closed_by_gateway=len(lifetimes),
        slow_lifetime_s=_summary(lifetimes),
        failures=failures,
    )


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": round(ordered[0], 2),
        "median": round(statistics.median(ordered), 2),
        "max": round(ordered[-1], 2),
    }


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


# -- the bench ----------------------------------------------------------------------------------------------


def raise_open_files(wanted: int) -> int:
    """Raise this process's open-file limit (children inherit it); the soft limit now."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def load(port: int, seconds: int) -> dict[str, float]:
    """``wrk -t1 -c32`` on /function/bench: requests, failures (non-2xx and socket errors), req/s, p50, p99."""
    run = wrk(Target(port, f"/function/{FUNCTION}"), 32, seconds)
    report: dict[str, float] = {
        "requests": run.requests,
        "failed": run.failed,
        "success_rate": round((run.requests - run.failed) / run.requests, 5) if run.requests else 0.0,
        "rps": run.rps,
    }
    for pct in ("50", "99"):
        if pct in run.latency_ms:
            report[f"p{pct}_ms"] = run.latency_ms[pct]
    return report


def connection_metrics(port: int) -> dict[str, float]:
    values = {}
    for line in metrics_text(port).splitlines():
        if line.startswith("gateway_connections_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def read_line(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, object]:
    """The next JSON line from the hostile process."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("{"):
            return dict(json.loads(line))
        if not line and proc.poll() is not None:
            break
    raise RuntimeError("the hostile clients did not report")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--idle", type=int, default=10_000, help="connections that send nothing")
    parser.add_argument("--slow", type=int, default=500, help="clients sending a header byte a second")
    parser.add_argument("--hostile", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the client process
    args = parser.parse_args()
    if args.hostile:
        import uvloop

        uvloop.run(_hostile(args.hostile, args.idle, args.slow, 1.0))
        return 0

    ensure_tools()
    open_files = raise_open_files(OPEN_FILES_WANTED)
    with tempfile.TemporaryDirectory(prefix="pyfaasd-soak-") as tmp:
        workdir = Path(tmp)
        gateway_state(workdir)
        # One worker, as documented (the default became auto, the cores, after this bench was written): the
        # resident memory read is that of the one serving process.
        one_worker = {"PYFAASD_GATEWAY_WORKERS": "1", "PYFAASD_ACCESS_LOG": "false"}
        with nginx(workdir) as upstream, gateway(workdir, upstream.port, **one_worker) as served:
            port, pid = served.port, served.pid
            load(port, 1)  # warm up: connections, pools
            rss_before = rss_mib(pid)
            baseline = load(port, args.duration)
            hostile = subprocess.Popen(
                [sys.executable, __file__, "--hostile", str(port), "--idle", str(args.idle), "--slow", str(args.slow)],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                ready = read_line(hostile, 90)
                metrics_ready = connection_metrics(port)
                rss_hostile = rss_mib(pid)
                under_attack = load(port, args.duration)
                metrics_after = connection_metrics(port)
            finally:
                hostile.send_signal(signal.SIGTERM)
            done = read_line(hostile, 30)
            hostile.wait(30)

    def ratio(key: str) -> float:
        return round(under_attack[key] / baseline[key], 3) if baseline.get(key) else 0.0

    report = {
        "benchmark": "soak",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "open_file_limit": open_files},
        "load": {"tool": "wrk -t1 -c32 --latency", "duration_s": args.duration, "path": f"/function/{FUNCTION}"},
        "hostile": {"idle_connections": args.idle, "slow_header_clients": args.slow, "slow_byte_every_s": 1.0},
        "gateway_limits": {"header_timeout_s": 10.0, "idle_timeout_s": 75.0, "max_connections": "default"},
        "results": {
            "baseline": baseline,
            "with_hostile_clients": under_attack,
            "ratios": {
                "success_rate": ratio("success_rate"),
                "rps": ratio("rps"),
                "p50": ratio("p50_ms"),
                "p99": ratio("p99_ms"),
            },
        },
        "hostile_clients": {"ready": ready, "done": done},
        "gateway": {
            "metrics_when_ready": metrics_ready,
            "metrics_after_load": metrics_after,
            "rss_mib_before": rss_before,
            "rss_mib_with_hostile_clients": rss_hostile,
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
