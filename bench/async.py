"""Async invocations: accepted requests/s and end-to-end latency at a fixed load, JSON out.

The function is nginx returning a fixed 20-byte body (as in bench/gateway.py), found through a hosts file the
bench writes; the gateway is ``python -m gateway`` with its queue in a temporary state dir (SQLite, WAL,
``synchronous=FULL``: every 202 waits for an fsync, shared by the requests committed together).

1. **Accepting**: ``wrk -t1 -c32`` POSTs ``/async-function/bench`` (no callback) for ``--duration`` seconds; the
   baseline, in the same run and on the same gateway, is ``wrk`` POSTing ``/function/bench`` (the synchronous
   proxy to the same nginx). The dispatcher works through the queue meanwhile; the time it takes to empty it
   afterwards gives the dispatch rate (``PYFAASD_ASYNC_CONCURRENCY`` calls at once).
2. **End to end**: ``--rate`` calls per second for ``--duration`` seconds, each with an ``X-Callback-Url`` to a
   receiver in this process; the latency is from sending the POST to the callback's arrival. The baseline is the
   round trip of the same POST to ``/function/bench`` at the same rate.

Run: ``.venv/bin/python bench/async.py [--duration 5] [--rate 200] [--workers 1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import (
    FUNCTION,
    Target,
    ensure_tools,
    free_port,
    gateway,
    gateway_state,
    metrics_text,
    nginx,
    percentiles,
    wrk,
)

POST_SCRIPT = 'wrk.method = "POST"\nwrk.body = "{\\"job\\": 1}"\nwrk.headers["Content-Type"] = "application/json"\n'


def wrk_post(port: int, path: str, script: Path, seconds: int) -> dict[str, float]:
    run = wrk(Target(port, path, script=script), 32, seconds)
    return run.summary(("50", "99"), requests=True)


def metric_sum(port: int, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text(port).splitlines() if line.startswith(name + "{"))


async def paced(rate: int, seconds: int, send: object) -> None:
    """Call ``send(i)`` ``rate`` times a second for ``seconds``, each in its own task, on a fixed schedule."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    for i in range(rate * seconds):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))  # type: ignore[operator]
    await asyncio.gather(*tasks)


async def end_to_end(port: int, rate: int, seconds: int) -> dict[str, object]:
    arrived: dict[str, float] = {}
    sent: dict[str, float] = {}
    done = asyncio.Event()
    expected = rate * seconds

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        arrived[request.headers["X-Call-Id"]] = time.perf_counter()
        if len(arrived) >= expected:
            done.set()
        return web.Response()

    app = web.Application()
    app.router.add_post("/", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    receiver_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
    base = f"http://127.0.0.1:{port}"
    sync_latency: list[float] = []
    accepted = 0
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

            async def call_async(i: int) -> None:
                nonlocal accepted
                call_id = f"bench-{i}"
                headers = {"X-Call-Id": call_id, "X-Callback-Url": f"http://127.0.0.1:{receiver_port}/"}
                sent[call_id] = time.perf_counter()
                async with session.post(f"{base}/async-function/{FUNCTION}", data=b'{"job": 1}', headers=headers) as r:
                    accepted += r.status == 202

            async def call_sync(i: int) -> None:
                began = time.perf_counter()
                async with session.post(f"{base}/function/{FUNCTION}", data=b'{"job": 1}') as r:
                    await r.read()
                sync_latency.append(time.perf_counter() - began)

            await paced(rate, seconds, call_sync)
            await paced(rate, seconds, call_async)
            try:
                async with asyncio.timeout(60):
                    await done.wait()
            except TimeoutError:
                pass
    finally:
        await runner.cleanup()
    latency = [arrived[k] - sent[k] for k in arrived if k in sent]
    return {
        "rate_per_s": rate,
        "calls": expected,
        "accepted": accepted,
        "called_back": len(latency),
        "async_callback_latency": percentiles(latency),
        "sync_round_trip_latency": percentiles(sync_latency),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per load")
    parser.add_argument("--rate", type=int, default=200, help="calls per second in the end-to-end run")
    parser.add_argument("--workers", type=int, default=1, help="gateway serving processes")
    args = parser.parse_args()
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="pyfaasd-bench-async-") as tmp:
        workdir = Path(tmp)
        gateway_state(workdir)
        script = workdir / "post.lua"
        script.write_text(POST_SCRIPT)
        settings = {"PYFAASD_GATEWAY_WORKERS": str(args.workers), "PYFAASD_ACCESS_LOG": "false"}
        with (
            nginx(workdir) as upstream,
            gateway(workdir, upstream.port, PYFAASD_LOG_LEVEL="error", **settings) as served,
        ):
            port = served.port
            wrk_post(port, f"/function/{FUNCTION}", script, 1)  # warm up
            sync = wrk_post(port, f"/function/{FUNCTION}", script, args.duration)
            accept = wrk_post(port, f"/async-function/{FUNCTION}", script, args.duration)
            began = time.monotonic()
            while (
                metric_sum(port, "gateway_async_finished_total") < accept["requests"] and time.monotonic() - began < 300
            ):
                time.sleep(0.2)
            finished = metric_sum(port, "gateway_async_finished_total")
            drain_s = time.monotonic() - began
            dispatched_rps = finished / (args.duration + drain_s)
            e2e = asyncio.run(end_to_end(port, args.rate, args.duration))
    callback = cast(dict[str, float], e2e["async_callback_latency"])
    round_trip = cast(dict[str, float], e2e["sync_round_trip_latency"])
    report = {
        "benchmark": "async",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "gateway": {"workers": args.workers, "async_concurrency": 4, "sqlite": "WAL, synchronous=FULL"},
        "accept": {
            "wrk": {"threads": 1, "connections": 32, "duration_s": args.duration},
            "async_function_202": accept,
            "sync_function_baseline": sync,
            "dispatched": {
                "calls": finished,
                "queue_emptied_after_s": round(drain_s, 2),
                "calls_per_s": round(dispatched_rps, 1),
            },
        },
        "end_to_end": e2e,
        "ratios": {
            "accepted_vs_sync_rps": round(accept["rps"] / sync["rps"], 3),
            "callback_p50_vs_sync_p50": round(callback["p50_ms"] / round_trip["p50_ms"], 2),
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
