"""The watchdog's resident memory as users deploy it: inside the function images, under load, JSON out.

The other watchdog bench runs fwatchdog from the development venv, whose extra packages (rich, which structlog
loads when it is there) make every process about 6 MB larger than in an image. Here each target is a container of
a function image built by scripts/build-images, on Docker's default bridge, loaded with ``wrk -t1 -c32`` for
``--duration`` seconds, then every watchdog process in it is measured (VmRSS; the function's own process is not
counted):

- ``http_mode``: ``pyfaasd/fn-echo-http`` as built (fwatchdog in http mode, its defaults: a worker per core);
- ``go_of_watchdog``: the same image and function with the Go of-watchdog 0.11.6 (scripts/build-go-peers)
  mounted in as the entrypoint, same environment: the peer, when it was built;
- ``python_mode``: ``pyfaasd/fn-hello-python`` (fwatchdog in python mode).

The bar (issue 16): under 30 MB per watchdog process. Needs root (it reads /proc of the containers' processes).
Run: ``sudo .venv/bin/python bench/watchdog_memory.py [--duration 5]``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import Target, ensure_tools, go_peer, machine, rss_mib, wrk

ECHO_IMAGE = "pyfaasd/fn-echo-http:latest"
PYTHON_IMAGE = "pyfaasd/fn-hello-python:latest"
PORT = 8080
BAR_MIB = 30 * 1000 * 1000 / (1024 * 1024)  # "under 30 MB", in the MiB VmRSS is reported in


@dataclass(frozen=True)
class Container:
    name: str
    address: str


@contextmanager
def container(image: str, *extra: str) -> Iterator[Container]:
    """A detached container of ``image`` on the default bridge, ready (its watchdog's health answers)."""
    name = f"pyfaasd-bench-memory-{secrets.token_hex(3)}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, *extra, image], check=True, capture_output=True)
    try:
        address = subprocess.run(
            ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        wait_ready(address)
        yield Container(name, address)
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def wait_ready(address: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}:{PORT}/_/health", timeout=2):
                return
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def watchdog_rss(name: str, marker: str) -> dict[str, object]:
    """VmRSS of the container's processes whose command line has ``marker`` (the watchdog's, not the function's)."""
    top = subprocess.run(
        ["docker", "top", name, "-eo", "pid,args"], check=True, capture_output=True, text=True
    ).stdout.splitlines()[1:]
    pids = [int(line.split(None, 1)[0]) for line in top if marker in line]
    sizes = sorted((rss_mib(pid) for pid in pids), reverse=True)
    return {
        "processes": len(sizes),
        "max_mib": max(sizes, default=0.0),
        "total_mib": round(sum(sizes), 1),
        "each_mib": sizes,
    }


def loaded(image: str, marker: str, seconds: int, *extra: str) -> dict[str, object]:
    """The watchdog processes' memory after ``seconds`` of load at 32 connections, and the load's figures."""
    with container(image, *extra) as running:
        target = Target(PORT, "/", address=running.address)
        wrk(target, 32, 1)
        load = wrk(target, 32, seconds).summary()
        return {"rss": watchdog_rss(running.name, marker), "load_c32": load}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds of load before measuring")
    args = parser.parse_args()
    ensure_tools()
    at_start = machine()
    results: dict[str, dict[str, object]] = {
        "http_mode": loaded(ECHO_IMAGE, "fwatchdog", args.duration),
        "python_mode": loaded(PYTHON_IMAGE, "fwatchdog", args.duration),
    }
    peer = go_peer("of-watchdog", "fwatchdog")
    go_report: dict[str, object] = {"absent": "not built: run scripts/build-go-peers"}
    if peer is not None:
        go_report = peer.describe()
        mount = ["-v", f"{peer.binary}:/go-fwatchdog:ro", "--entrypoint", "/go-fwatchdog"]
        results["go_of_watchdog"] = loaded(ECHO_IMAGE, "/go-fwatchdog", args.duration, *mount)

    def max_mib(name: str) -> float:
        rss = results[name]["rss"]
        assert isinstance(rss, dict)
        return float(rss["max_mib"])

    ratios: dict[str, object] = {
        "bar_mib": round(BAR_MIB, 1),
        "http_mode_max_under_bar": max_mib("http_mode") < BAR_MIB,
        "python_mode_max_under_bar": max_mib("python_mode") < BAR_MIB,
    }
    if "go_of_watchdog" in results:
        ratios["http_mode_max_vs_go"] = round(max_mib("http_mode") / max_mib("go_of_watchdog"), 2)
    report = {
        "benchmark": "watchdog_memory",
        "machine": {**at_start, "load_avg_at_end": machine()["load_avg"]},
        "wrk": {"threads": 1, "connections": 32, "duration_s": args.duration},
        "go_peer": {"of-watchdog": go_report},
        "results": results,
        "ratios": ratios,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
