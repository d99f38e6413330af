"""Gateway throughput and latency, all measured in one run on this machine, JSON out.

Every target is loaded with ``wrk -t1 -c32 --latency`` (throughput) and ``-c1`` (added latency). The upstream
is one nginx returning a fixed 20-byte body for every path; ``/function/bench`` is resolved through a hosts
file the bench writes (``bench.openfaas-fn`` → 127.0.0.1, function port = nginx's port). No provider is needed.

- The peers, all up at once and measured taking turns over ``--rounds`` rounds (median kept), so that the drift
  of a shared machine's load falls on all of them alike; every proxy forwards to the same nginx:
  ``nginx`` (called directly: the baseline), ``gateway`` (``python -m gateway``, its default settings: workers
  auto, the cores), ``go_gateway`` (the Go OpenFaaS gateway, its defaults, when scripts/build-go-peers has built
  it; it sends ``/function/<name>`` to ``functions_provider_url`` unchanged — faasd points that at its provider,
  which proxies to the container; here it is the nginx itself, one hop like ours), ``nginx_proxy`` (nginx as a
  reverse proxy with a keep-alive upstream pool) and ``aiohttp_proxy`` (bench/aiohttp_proxy.py, one process).
- ``gateway_workers1``, ``gateway_workers2``, ``gateway_workers2_no_access_log``: ours with those settings.
- ``gateway_host_route`` and ``gateway_path_route``: a default gateway reached the other two ways a routes file
  (INTERFACES.md §8) gives: ``Host: bench.example.com`` at ``/`` and the prefix ``/bench``. Measured in the same
  gateway process as its ``/function/bench`` run (``gateway_same_process``), the three taking turns over three
  rounds (median kept), so the added latency of host routing over ``/function/`` is a difference within one
  process under the same background load.

Ratios are against nginx, and ours against the Go gateway (requests/s at 32 connections; added p50 at one
connection = p50 through a proxy minus nginx's own p50 at one connection, same rounds). As root the bench runs
in a network namespace of its own (the Go gateway's ports, 8080 and 8082, are fixed). Installs wrk and
nginx-light from apt when missing.
Run: ``scripts/build-go-peers && sudo .venv/bin/python bench/gateway.py [--duration 5] [--rounds 3]``.
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
    FUNCTION,
    Comparison,
    GoPeer,
    Running,
    Target,
    ensure_tools,
    enter_private_network,
    gateway,
    gateway_state,
    go_peer_state,
    interleaved,
    machine,
    measure,
    nginx,
    peer_ratios,
    peer_report,
    process,
    take_turns,
    wait_port,
)
from netconf.routes import Route, RouteKind, write_routes

DOMAIN = "bench.example.com"
GO_GATEWAY_PORTS = (8080, 8082)  # its API and its metrics, both fixed


@contextmanager
def go_gateway(peer: GoPeer, upstream_port: int) -> Iterator[Running]:
    """The Go OpenFaaS gateway, its defaults but for where the functions are (its "provider": the upstream)."""
    env = {"functions_provider_url": f"http://127.0.0.1:{upstream_port}"}
    with process([str(peer.binary)], env) as proc:
        wait_port(GO_GATEWAY_PORTS[0], f"/function/{FUNCTION}")
        yield Running(GO_GATEWAY_PORTS[0], proc.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="turns the peers take (median kept)")
    args = parser.parse_args()
    ensure_tools()
    network = enter_private_network()
    at_start = machine()
    go_peer, go_report = go_peer_state("gateway", "gateway", GO_GATEWAY_PORTS)
    path = f"/function/{FUNCTION}"
    with tempfile.TemporaryDirectory(prefix="pyfaasd-bench-") as tmp:
        workdir = Path(tmp)
        gateway_state(workdir)
        key = f"{FUNCTION}.openfaas-fn"
        write_routes(workdir / "routes", [Route(RouteKind.DOMAIN, DOMAIN, key), Route(RouteKind.PATH, "/bench", key)])
        with nginx(workdir) as upstream:
            proxies = {"gateway": gateway(workdir, upstream.port)}
            if go_peer is not None:
                proxies["go_gateway"] = go_gateway(go_peer, upstream.port)
            results, memory = take_turns(workdir, upstream, proxies, path, args.rounds, args.duration)
            with gateway(workdir, upstream.port, PYFAASD_GATEWAY_WORKERS="1") as served:
                results["gateway_workers1"] = measure(Target(served.port, path), args.duration)
            with gateway(workdir, upstream.port) as served:
                routes = {
                    "gateway_same_process": Target(served.port, path),
                    "gateway_host_route": Target(served.port, "/", DOMAIN),
                    "gateway_path_route": Target(served.port, "/bench"),
                }
                results.update(interleaved(routes, args.duration))
            with gateway(workdir, upstream.port, PYFAASD_GATEWAY_WORKERS="2") as served:
                results["gateway_workers2"] = measure(Target(served.port, path), args.duration)
            no_log = {"PYFAASD_GATEWAY_WORKERS": "2", "PYFAASD_ACCESS_LOG": "false"}
            with gateway(workdir, upstream.port, **no_log) as served:
                results["gateway_workers2_no_access_log"] = measure(Target(served.port, path), args.duration)

    compare = Comparison(results)
    ratios = {
        "gateway_vs_nginx_rps": compare.rps_ratio("gateway", "nginx"),
        "gateway_workers1_vs_nginx_rps": compare.rps_ratio("gateway_workers1", "nginx"),
        "gateway_workers2_vs_nginx_rps": compare.rps_ratio("gateway_workers2", "nginx"),
        "gateway_workers1_added_p50_ms_c1": compare.added_ms("gateway_workers1", "nginx"),
        "gateway_workers2_added_p50_ms_c1": compare.added_ms("gateway_workers2", "nginx"),
        "host_route_vs_function_rps": compare.rps_ratio("gateway_host_route", "gateway_same_process"),
        "host_route_added_p50_ms_c1_over_function": compare.added_ms("gateway_host_route", "gateway_same_process"),
        "path_route_vs_function_rps": compare.rps_ratio("gateway_path_route", "gateway_same_process"),
        "path_route_added_p50_ms_c1_over_function": compare.added_ms("gateway_path_route", "gateway_same_process"),
        **peer_ratios(compare, "gateway", "go_gateway"),
    }
    report = peer_report(
        "gateway",
        at_start=at_start,
        network=network,
        seconds=args.duration,
        rounds=args.rounds,
        go_peer={"gateway": go_report},
        results=results,
        ratios=ratios,
        memory=memory,
    )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
