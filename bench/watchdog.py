"""Watchdog throughput and latency, all measured in one run on this machine, JSON out.

Targets, each loaded with ``wrk -t1 -c32 -d5s --latency`` (throughput) and ``-c1`` (added latency):

- ``nginx``: nginx returning a fixed 20-byte body (the baseline);
- ``http_mode``: fwatchdog in http mode in front of that nginx (and with ``workers=2``);
- ``python_mode``: fwatchdog in python mode, an async handler returning the same body (and with ``workers=2``,
  and ``python_mode_sync`` with a plain ``def`` handler, which runs in the thread pool);
- ``http_mode_aiohttp``: http mode in front of a separate aiohttp server running the same async handler — the
  set-up python mode must beat by 2x.

Ratios are against nginx and, for python mode, against ``http_mode_aiohttp``. Installs wrk and nginx-light
from apt when missing. Run as root: ``sudo .venv/bin/python bench/watchdog.py [--duration 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BODY = "01234567890123456789"  # 20 bytes
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if shutil.which(tool) is None]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def wait_port(port: int, path: str = "/", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}{path}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.stdout == "200":
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered 200 on port {port}{path}")


@contextmanager
def process(argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def nginx(workdir: Path) -> Iterator[int]:
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "{BODY}"; }}
    }}
}}
"""
    )
    with process(["nginx", "-c", str(conf), "-e", str(workdir / "nginx-error.log")]):
        wait_port(port)
        yield port


@contextmanager
def fwatchdog(workdir: Path, env: dict[str, str]) -> Iterator[int]:
    port = free_port()
    full = {
        "port": str(port),
        "metrics_port": "0",
        "TMPDIR": str(workdir),
        "healthcheck_interval": "0",
        "log_format": "json",
        **env,
    }
    with process([sys.executable, "-m", "watchdog"], full):
        wait_port(port, "/_/ready")
        yield port


def wrk(port: int, connections: int, seconds: int) -> dict[str, float]:
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"],
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


def measure(port: int, seconds: int) -> dict[str, dict[str, float]]:
    wrk(port, 32, 1)  # warm up: connections, caches, the thread pool
    return {"c32": wrk(port, 32, seconds), "c1": wrk(port, 1, seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    args = parser.parse_args()
    ensure_tools()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pyfaasd-bench-") as tmp:
        workdir = Path(tmp)
        function = workdir / "function"
        function.mkdir()
        (function / "handler.py").write_text(HANDLER)
        sync_function = workdir / "sync_function"
        sync_function.mkdir()
        (sync_function / "handler.py").write_text(SYNC_HANDLER)
        (workdir / "aiohttp_server.py").write_text(AIOHTTP_SERVER)
        with nginx(workdir) as nginx_port:
            results["nginx"] = measure(nginx_port, args.duration)
            upstream = {"mode": "http", "fprocess": "sleep infinity", "upstream_url": f"http://127.0.0.1:{nginx_port}"}
            # fprocess is required in http mode; nginx is already up, so a placeholder process stands in for it.
            with fwatchdog(workdir, {**upstream, "workers": "1"}) as port:  # the default is auto (the cores)
                results["http_mode"] = measure(port, args.duration)
            with fwatchdog(workdir, {**upstream, "workers": "2"}) as port:
                results["http_mode_workers2"] = measure(port, args.duration)
        with fwatchdog(workdir, {"mode": "python", "function_path": str(function)}) as port:
            results["python_mode"] = measure(port, args.duration)
        with fwatchdog(workdir, {"mode": "python", "function_path": str(function), "workers": "2"}) as port:
            results["python_mode_workers2"] = measure(port, args.duration)
        with fwatchdog(workdir, {"mode": "python", "function_path": str(sync_function)}) as port:
            results["python_mode_sync"] = measure(port, args.duration)
        aiohttp_port = free_port()
        behind = {
            "mode": "http",
            "fprocess": f"{sys.executable} {workdir / 'aiohttp_server.py'} {aiohttp_port}",
            "upstream_url": f"http://127.0.0.1:{aiohttp_port}",
        }
        with fwatchdog(workdir, behind) as port:
            results["http_mode_aiohttp"] = measure(port, args.duration)

    def ratio(a: str, b: str) -> float:
        return round(results[a]["c32"]["rps"] / results[b]["c32"]["rps"], 3)

    def added_ms(a: str, b: str) -> float:
        return round(results[a]["c1"].get("p50_ms", 0.0) - results[b]["c1"].get("p50_ms", 0.0), 3)

    report = {
        "benchmark": "watchdog",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "wrk": {"threads": 1, "duration_s": args.duration, "body_bytes": len(BODY)},
        "results": results,
        "ratios": {
            "http_mode_vs_nginx_rps": ratio("http_mode", "nginx"),
            "http_mode_workers2_vs_nginx_rps": ratio("http_mode_workers2", "nginx"),
            "python_mode_vs_http_mode_aiohttp_rps": ratio("python_mode", "http_mode_aiohttp"),
            "python_mode_workers2_vs_http_mode_aiohttp_rps": ratio("python_mode_workers2", "http_mode_aiohttp"),
            "python_mode_sync_vs_http_mode_aiohttp_rps": ratio("python_mode_sync", "http_mode_aiohttp"),
            "http_mode_added_p50_ms_c1": added_ms("http_mode", "nginx"),
        },
        "reference": {
            "go_of_watchdog_0.11.6_http_mode_c32_rps": 19000,
            "go_of_watchdog_added_p50_ms_c1": 0.13,
            "note": "measured by the project on this machine class; not re-run here",
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
