"""Watchdog throughput and latency, all measured in one run on this machine, JSON out.

Targets, each loaded with ``wrk -t1 -c32 --latency`` (throughput) and ``-c1`` (added latency):

- the peers, all up at once and measured taking turns over ``--rounds`` rounds (median kept), so that the drift
  of a shared machine's load falls on all of them alike:
  ``nginx`` (nginx returning a fixed 20-byte body, called directly: the baseline), ``http_mode`` (fwatchdog in
  http mode in front of that nginx, its default settings: ``workers`` is auto, the cores), ``go_of_watchdog``
  (the Go of-watchdog in http mode in front of the same nginx, its defaults; when scripts/build-go-peers has
  built it), ``nginx_proxy`` (nginx as a reverse proxy to it) and ``aiohttp_proxy`` (bench/aiohttp_proxy.py);
- ``http_mode_workers1``, ``http_mode_workers2``: http mode with one and two workers;
- ``python_mode``: fwatchdog in python mode, an async handler returning the same body (and with ``workers=2``,
  and ``python_mode_sync`` with a plain ``def`` handler, which runs in the thread pool);
- ``http_mode_aiohttp``: http mode in front of a separate aiohttp server running the same async handler — the
  set-up python mode must beat by 2x.

Ratios are against nginx, against the Go of-watchdog (requests/s at 32 connections; added p50 at one connection
= p50 through a proxy minus nginx's own p50 at one connection, same rounds) and, for python mode, against
``http_mode_aiohttp``. As root the bench runs in a network namespace of its own (the Go of-watchdog's metrics
port, 8081, is fixed). Installs wrk and nginx-light from apt when missing.
Run: ``scripts/build-go-peers && sudo .venv/bin/python bench/watchdog.py [--duration 5] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import (
    BODY,
    Comparison,
    GoPeer,
    Running,
    Target,
    ensure_tools,
    enter_private_network,
    free_port,
    go_peer_state,
    machine,
    measure,
    nginx,
    peer_ratios,
    peer_report,
    process,
    take_turns,
    wait_port,
)

# The same handler code runs in python mode and in the separate aiohttp server: an async function returning
# the body. The sync variant (thread pool) is measured too.
HANDLER = f'async def handle(event, context):\n    return "{BODY}"\n'
SYNC_HANDLER = f'def handle(event, context):\n    return "{BODY}"\n'
AIOHTTP_SERVER = f"""
import sys
from aiohttp import web
async def handle(request):
    return web.Response(text="{BODY}")
app = web.Application()
app.router.add_route("*", "/{{tail:.*}}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""
GO_OF_WATCHDOG_PORTS = (8081,)  # its metrics port, fixed
# Not a speed setting: how long a watchdog waits after SIGTERM before it stops (default: write_timeout, 30 s).
QUICK_STOP = {"healthcheck_interval": "0"}


@contextmanager
def fwatchdog(workdir: Path, env: dict[str, str]) -> Iterator[Running]:
    """``python -m watchdog`` with ``env`` and its defaults for the rest (the lock file in the workdir, the
    metrics on a free port, no wait at SIGTERM)."""
    port = free_port()
    full = {"port": str(port), "metrics_port": str(free_port()), "TMPDIR": str(workdir), **QUICK_STOP, **env}
    with process([sys.executable, "-m", "watchdog"], full) as proc:
        wait_port(port, "/_/ready")
        yield Running(port, proc.pid)


@contextmanager
def go_of_watchdog(peer: GoPeer, workdir: Path, env: dict[str, str]) -> Iterator[Running]:
    """The Go of-watchdog with ``env`` and its defaults for the rest (the lock file in the workdir, no wait at
    SIGTERM)."""
    port = free_port()
    with process([str(peer.binary)], {"port": str(port), "TMPDIR": str(workdir), **QUICK_STOP, **env}) as proc:
        wait_port(port, "/")
        yield Running(port, proc.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="turns the peers take (median kept)")
    args = parser.parse_args()
    ensure_tools()
    network = enter_private_network()
    at_start = machine()
    go_peer, go_report = go_peer_state("of-watchdog", "fwatchdog", GO_OF_WATCHDOG_PORTS)
    with tempfile.TemporaryDirectory(prefix="pyfaasd-bench-") as tmp:
        workdir = Path(tmp)
        function = workdir / "function"
        function.mkdir()
        (function / "handler.py").write_text(HANDLER)
        sync_function = workdir / "sync_function"
        sync_function.mkdir()
        (sync_function / "handler.py").write_text(SYNC_HANDLER)
        (workdir / "aiohttp_server.py").write_text(AIOHTTP_SERVER)
        with nginx(workdir) as upstream:
            # fprocess is required in http mode; nginx is already up, so a placeholder process stands in for it.
            http_mode = {
                "mode": "http",
                "fprocess": "sleep infinity",
                "upstream_url": f"http://127.0.0.1:{upstream.port}",
            }
            proxies = {"http_mode": fwatchdog(workdir, http_mode)}
            if go_peer is not None:
                proxies["go_of_watchdog"] = go_of_watchdog(go_peer, workdir, http_mode)
            results, memory = take_turns(workdir, upstream, proxies, "/", args.rounds, args.duration)
            with fwatchdog(workdir, {**http_mode, "workers": "1"}) as served:
                results["http_mode_workers1"] = measure(Target(served.port), args.duration)
            with fwatchdog(workdir, {**http_mode, "workers": "2"}) as served:
                results["http_mode_workers2"] = measure(Target(served.port), args.duration)
        with fwatchdog(workdir, {"mode": "python", "function_path": str(function)}) as served:
            results["python_mode"] = measure(Target(served.port), args.duration)
        with fwatchdog(workdir, {"mode": "python", "function_path": str(function), "workers": "2"}) as served:
            results["python_mode_workers2"] = measure(Target(served.port), args.duration)
        with fwatchdog(workdir, {"mode": "python", "function_path": str(sync_function)}) as served:
            results["python_mode_sync"] = measure(Target(served.port), args.duration)
        aiohttp_port = free_port()
        behind = {
            "mode": "http",
            "fprocess": f"{sys.executable} {workdir / 'aiohttp_server.py'} {aiohttp_port}",
            "upstream_url": f"http://127.0.0.1:{aiohttp_port}",
        }
        with fwatchdog(workdir, behind) as served:
            results["http_mode_aiohttp"] = measure(Target(served.port), args.duration)

    compare = Comparison(results)
    ratios = {
        "http_mode_vs_nginx_rps": compare.rps_ratio("http_mode", "nginx"),
        "http_mode_workers1_vs_nginx_rps": compare.rps_ratio("http_mode_workers1", "nginx"),
        "http_mode_workers2_vs_nginx_rps": compare.rps_ratio("http_mode_workers2", "nginx"),
        "python_mode_vs_http_mode_aiohttp_rps": compare.rps_ratio("python_mode", "http_mode_aiohttp"),
        "python_mode_workers2_vs_http_mode_aiohttp_rps": compare.rps_ratio("python_mode_workers2", "http_mode_aiohttp"),
        "python_mode_sync_vs_http_mode_aiohttp_rps": compare.rps_ratio("python_mode_sync", "http_mode_aiohttp"),
        **peer_ratios(compare, "http_mode", "go_of_watchdog"),
    }
    report = peer_report(
        "watchdog",
        at_start=at_start,
        network=network,
        seconds=args.duration,
        rounds=args.rounds,
        go_peer={"of-watchdog": go_report},
        results=results,
        ratios=ratios,
        memory=memory,
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
