"""Gateway throughput and latency, all measured in one run on this machine, JSON out.

Targets, each loaded with ``wrk -t1 -c32 -d5s --latency`` (throughput) and ``-c1`` (added latency):

- ``nginx``: nginx returning a fixed 20-byte body, called directly (the baseline);
- ``gateway``: ``python -m gateway`` in front of that nginx, ``/function/bench`` resolved through a hosts file
  the bench writes (``bench.openfaas-fn`` → 127.0.0.1, function port = nginx's port), one worker;
- ``gateway_workers2``: the same with ``--workers 2``;
- ``gateway_workers2_no_access_log``: the same without the per-request access line;
- ``gateway_host_route`` and ``gateway_path_route``: the one-worker gateway again, reached the other two ways a
  routes file (INTERFACES.md §8) gives: ``Host: bench.example.com`` at ``/`` and the prefix ``/bench``. Measured in
  the same gateway process as its ``/function/bench`` run (``gateway_same_process``), the three taking turns over
  three rounds (median kept), so the added latency of host routing over ``/function/`` is a difference within
  one process under the same background load.

Ratios are against nginx. Installs wrk and nginx-light from apt when missing. No provider is needed (every
request finds its replica in the hosts file). Run: ``.venv/bin/python bench/gateway.py [--duration 5]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netconf.hosts import Replica, write_hosts  # noqa: E402
from netconf.routes import Route, RouteKind, write_routes  # noqa: E402

# The nginx, process and tool helpers of the watchdog bench (bench/ is not a package, and "watchdog" is taken).
_spec = importlib.util.spec_from_file_location("bench_watchdog", ROOT / "bench" / "watchdog.py")
assert _spec is not None
assert _spec.loader is not None
_watchdog_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_watchdog_bench)
BODY = _watchdog_bench.BODY
ensure_tools = _watchdog_bench.ensure_tools
free_port = _watchdog_bench.free_port
nginx = _watchdog_bench.nginx
process = _watchdog_bench.process
wait_port = _watchdog_bench.wait_port

FUNCTION = "bench"
DOMAIN = "bench.example.com"


def wrk(port: int, path: str, connections: int, seconds: int, host: str | None = None) -> dict[str, float]:
    headers = ["-H", f"Host: {host}"] if host else []
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *headers, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = {}
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if match:
            value = float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
            latency[f"p{pct}_ms"] = round(value, 3)
    return {"rps": round(rps, 1), **latency, "non_2xx": int(errors.group(1)) if errors else 0}


def measure(port: int, seconds: int, path: str = "/", host: str | None = None) -> dict[str, dict[str, float]]:
    wrk(port, path, 32, 1, host)  # warm up: connections, pools
    return {"c32": wrk(port, path, 32, seconds, host), "c1": wrk(port, path, 1, seconds, host)}


def interleaved(
    port: int, seconds: int, targets: dict[str, tuple[str, str | None]], rounds: int = 3
) -> dict[str, dict[str, dict[str, float]]]:
    """Each target measured ``rounds`` times, in turn (A B C A B C ...), and the median run of each kept: on a
    shared machine the load of others drifts over a minute, and taking turns spreads it over all targets."""
    for path, host in targets.values():
        wrk(port, path, 32, 1, host)  # warm up
    runs: dict[str, dict[str, list[dict[str, float]]]] = {name: {"c32": [], "c1": []} for name in targets}
    for _ in range(rounds):
        for name, (path, host) in targets.items():
            runs[name]["c32"].append(wrk(port, path, 32, seconds, host))
            runs[name]["c1"].append(wrk(port, path, 1, seconds, host))

    def median(found: list[dict[str, float]], key: str) -> dict[str, float]:
        return sorted(found, key=lambda run: run.get(key, 0.0))[len(found) // 2]

    return {
        name: {"c32": median(by["c32"], "rps"), "c1": median(by["c1"], "p50_ms"), "rounds": {"count": rounds}}
        for name, by in runs.items()
    }


@contextmanager
def gateway(workdir: Path, function_port: int, **env: str) -> Iterator[int]:
    port = free_port()
    full = {
        "PYFAASD_GATEWAY_ADDR": f"127.0.0.1:{port}",
        "PYFAASD_STATE_DIR": str(workdir),
        "PYFAASD_PROVIDER_URL": f"http://127.0.0.1:{free_port()}",  # not needed: the hosts file has the function
        "PYFAASD_FUNCTION_PORT": str(function_port),
        "PYFAASD_LOG_LEVEL": "warning",
        **env,
    }
    with process([sys.executable, "-m", "gateway"], full):
        wait_port(port, "/_/health")
        wait_port(port, f"/function/{FUNCTION}")
        yield port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    args = parser.parse_args()
    ensure_tools()
    results: dict[str, dict[str, dict[str, float]]] = {}
    path = f"/function/{FUNCTION}"
    with tempfile.TemporaryDirectory(prefix="pyfaasd-bench-") as tmp:
        workdir = Path(tmp)
        secrets = workdir / "secrets"
        secrets.mkdir()
        (secrets / "basic-auth-user").write_text("admin\n")
        (secrets / "basic-auth-password").write_text("bench\n")
        replica = Replica(FUNCTION, "openfaas-fn", IPv4Address("127.0.0.1"))
        write_hosts(workdir / "hosts", IPv4Address("10.62.0.1"), [replica])
        key = f"{FUNCTION}.openfaas-fn"
        write_routes(workdir / "routes", [Route(RouteKind.DOMAIN, DOMAIN, key), Route(RouteKind.PATH, "/bench", key)])
        with nginx(workdir) as nginx_port:
            results["nginx"] = measure(nginx_port, args.duration)
            with gateway(workdir, nginx_port, PYFAASD_GATEWAY_WORKERS="1") as port:
                results["gateway"] = measure(port, args.duration, path)
            with gateway(workdir, nginx_port) as port:
                results.update(
                    interleaved(
                        port,
                        args.duration,
                        {
                            "gateway_same_process": (path, None),
                            "gateway_host_route": ("/", DOMAIN),
                            "gateway_path_route": ("/bench", None),
                        },
                    )
                )
            with gateway(workdir, nginx_port, PYFAASD_GATEWAY_WORKERS="2") as port:
                results["gateway_workers2"] = measure(port, args.duration, path)
            with gateway(workdir, nginx_port, PYFAASD_GATEWAY_WORKERS="2", PYFAASD_ACCESS_LOG="false") as port:
                results["gateway_workers2_no_access_log"] = measure(port, args.duration, path)

    def ratio(a: str, b: str) -> float:
        return round(results[a]["c32"]["rps"] / results[b]["c32"]["rps"], 3)

    def added_ms(a: str, b: str) -> float:
        return round(results[a]["c1"].get("p50_ms", 0.0) - results[b]["c1"].get("p50_ms", 0.0), 3)

    go_rps = 19000
    report = {
        "benchmark": "gateway",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "wrk": {"threads": 1, "duration_s": args.duration, "body_bytes": len(BODY)},
        "results": results,
        "ratios": {
            "gateway_vs_nginx_rps": ratio("gateway", "nginx"),
            "gateway_workers2_vs_nginx_rps": ratio("gateway_workers2", "nginx"),
            "gateway_workers2_vs_go_gateway_rps": round(results["gateway_workers2"]["c32"]["rps"] / go_rps, 3),
            "gateway_added_p50_ms_c1": added_ms("gateway", "nginx"),
            "gateway_workers2_added_p50_ms_c1": added_ms("gateway_workers2", "nginx"),
            "host_route_vs_function_rps": ratio("gateway_host_route", "gateway_same_process"),
            "host_route_added_p50_ms_c1_over_function": added_ms("gateway_host_route", "gateway_same_process"),
            "path_route_vs_function_rps": ratio("gateway_path_route", "gateway_same_process"),
            "path_route_added_p50_ms_c1_over_function": added_ms("gateway_path_route", "gateway_same_process"),
        },
        "reference": {
            "go_openfaas_gateway_c32_rps": go_rps,
            "go_openfaas_gateway_c32_p50_ms": 1.5,
            "go_openfaas_gateway_added_p50_ms_c1": 0.13,
            "aiohttp_uvloop_20_line_proxy_c32_rps": {"workers1": 7200, "workers2": 13100},
            "note": "measured by the project on this machine class against nginx; not re-run here",
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
