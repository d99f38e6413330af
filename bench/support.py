"""What the benches share: tools, ports, processes, nginx, wrk and its parser, the gateway set-up, the Go peers.

The benches are scripts (``python bench/gateway.py``); each puts the repo root on ``sys.path`` and imports this
as ``bench.support``. Nothing here measures on its own or asserts a speed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from netconf.hosts import Replica, write_hosts  # noqa: E402

BODY = "01234567890123456789"  # 20 bytes: what the nginx upstream returns
FUNCTION = "bench"  # the function every gateway bench calls, /function/bench
GO_PEERS = Path(os.environ.get("PYFAASD_GO_PEERS", "/var/cache/pyfaasd/go-peers"))  # scripts/build-go-peers
NETNS_MARK = "PYFAASD_BENCH_NETNS"
AIOHTTP_PROXY = ROOT / "bench" / "aiohttp_proxy.py"


# -- tools, ports, processes ----------------------------------------------------------------------------------


def ensure_tools() -> None:
    """wrk and nginx from apt when missing (root)."""
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if shutil.which(tool) is None]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def enter_private_network() -> str:
    """Run this bench on in a network namespace of its own with loopback only, when root: the Go peers listen on
    fixed ports (of-watchdog's metrics on 8081, the gateway on 8080 and 8082, on every address) that a pyfaasd or
    another bench on the host may hold. Re-executes the script under ``unshare --net`` once; returns "private"
    there, "host" when not root (the Go peers then run only if their ports are free)."""
    if os.environ.get(NETNS_MARK) == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return "private"
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "host"
    sys.stdout.flush()
    argv = ["unshare", "--net", "--", sys.executable, *sys.argv]
    os.execvpe("unshare", argv, {**os.environ, NETNS_MARK: "1"})  # noqa: S606  (no return; no shell wanted)


def machine() -> dict[str, object]:
    """What the report says about the machine: cores, Python, and the load average now (the machine is shared:
    a bench records it at its start and its end)."""
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ports_taken(ports: tuple[int, ...]) -> list[int]:
    """Those of ``ports`` that cannot be bound on every address now."""
    taken = []
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                taken.append(port)
    return taken


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


@dataclass(frozen=True)
class Running:
    """A server a bench started: where it listens and its process (for its resident memory)."""

    port: int
    pid: int


@contextmanager
def process(argv: list[str], env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` from the repo root, its output dropped; SIGTERM at the end, SIGKILL if it is not gone in 30 s."""
    proc = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = task.read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(_descendants(int(child)))
    return found


def rss_mib(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def tree_cpu_s(pid: int) -> float:
    """CPU time (user + system) used so far by a process and all its descendants, in seconds."""
    ticks = 0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of a process and all its descendants: how many, the largest one, the sum."""
    sizes = [rss_mib(each) for each in _descendants(pid)]
    return {"processes": len(sizes), "max_mib": max(sizes, default=0.0), "total_mib": round(sum(sizes), 1)}


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


# -- nginx: the upstream, and nginx as a reverse proxy --------------------------------------------------------


@contextmanager
def nginx(workdir: Path, upstream_port: int | None = None, name: str = "nginx") -> Iterator[Running]:
    """nginx-light on loopback. Without ``upstream_port``: one worker returning the fixed 20-byte body for every
    path (the function every bench calls). With it: a reverse proxy to that port, as nginx is run in front of an
    application (``worker_processes auto``, a keep-alive pool of upstream connections, no access log)."""
    port = free_port()
    conf = workdir / f"{name}.conf"
    if upstream_port is None:
        workers = "1"
        upstream_block = ""
        location = f'default_type text/plain; return 200 "{BODY}";'
    else:
        workers = "auto"
        upstream_block = (
            f"upstream function {{ server 127.0.0.1:{upstream_port}; keepalive 64; keepalive_requests 1000000; }}"
        )
        location = 'proxy_pass http://function; proxy_http_version 1.1; proxy_set_header Connection "";'
    conf.write_text(
        f"""
worker_processes {workers};
daemon off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    {upstream_block}
    server {{
        listen 127.0.0.1:{port};
        location / {{ {location} }}
    }}
}}
"""
    )
    with process(["nginx", "-c", str(conf), "-e", str(workdir / f"{name}-error.log")]) as proc:
        wait_port(port)
        yield Running(port, proc.pid)


@contextmanager
def aiohttp_proxy(upstream_port: int) -> Iterator[Running]:
    """The minimal aiohttp reverse proxy of bench/aiohttp_proxy.py (one process, uvloop) to ``upstream_port``."""
    port = free_port()
    with process([sys.executable, str(AIOHTTP_PROXY), str(port), f"http://127.0.0.1:{upstream_port}"]) as proc:
        wait_port(port)
        yield Running(port, proc.pid)


# -- wrk --------------------------------------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run printed: the totals and the latency distribution (``--latency``), in milliseconds."""

    requests: int
    rps: float
    latency_ms: dict[str, float]  # by percentile as wrk prints it: "50", "75", "90", "99"
    non_2xx: int = 0
    socket_errors: int = 0

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors

    def summary(self, percentiles: tuple[str, ...] = ("50", "90", "99"), requests: bool = False) -> dict[str, float]:
        """The shape the benches report: rps (to 0.1), [requests,] p<N>_ms for those printed, non_2xx."""
        shown: dict[str, float] = {"rps": round(self.rps, 1)}
        if requests:
            shown["requests"] = self.requests
        for pct in percentiles:
            if pct in self.latency_ms:
                shown[f"p{pct}_ms"] = self.latency_ms[pct]
        shown["non_2xx"] = self.non_2xx
        return shown


def parse_wrk(out: str) -> WrkRun:
    """Read wrk's report; ValueError when it has no request count or rate (wrk failed)."""
    total = re.search(r"^\s*(\d+) requests in ", out, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    if total is None or rate is None:
        raise ValueError(f"not a wrk report: {out[:200]!r}")
    latency = {}
    for match in re.finditer(r"^\s+(\d+)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.MULTILINE):
        latency[match.group(1)] = round(float(match.group(2)) * _UNIT_MS[match.group(3)], 3)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkRun(
        requests=int(total.group(1)),
        rps=float(rate.group(1)),
        latency_ms=latency,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    )


@dataclass(frozen=True)
class Target:
    """Where wrk sends its requests: a port on loopback (or ``address``), a path and, for host routing, a Host
    header."""

    port: int
    path: str = "/"
    host: str | None = None
    script: Path | None = None  # a wrk Lua script (a POST body, say)
    address: str = "127.0.0.1"  # a container's address, for benches against function containers
    pid: int | None = None  # the server's process: with it, its CPU time per request is measured


def wrk(target: Target, connections: int, seconds: int) -> WrkRun:
    headers = ["-H", f"Host: {target.host}"] if target.host else []
    script = ["-s", str(target.script)] if target.script else []
    url = f"http://{target.address}:{target.port}{target.path}"
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *headers, *script, url],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_wrk(result.stdout)


def measure(target: Target, seconds: int) -> dict[str, dict[str, float]]:
    """A 1 s warm-up at 32 connections, then throughput at 32 connections and latency at one."""
    wrk(target, 32, 1)  # warm up: connections, pools, caches, thread pools
    return {"c32": wrk(target, 32, seconds).summary(), "c1": wrk(target, 1, seconds).summary()}


def interleaved(targets: Mapping[str, Target], seconds: int, rounds: int = 3) -> dict[str, dict[str, dict[str, float]]]:
    """Each target measured ``rounds`` times, in turn (A B C A B C ...), and the median run of each kept (by
    req/s at 32 connections, by p50 at one): on a shared machine the load of others drifts over a minute, and
    taking turns spreads it over all targets.

    A target with a ``pid`` also gets ``cpu_us_per_request``: the CPU time (user + system, all its processes) it
    spent per request at 32 connections, the median over the rounds. Less swayed by other tenants than req/s (they
    take the cores away, not the work per request), it says what a change to the code did."""
    for target in targets.values():
        wrk(target, 32, 1)  # warm up
    runs: dict[str, dict[str, list[dict[str, float]]]] = {name: {"c32": [], "c1": []} for name in targets}
    cpu: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, target in targets.items():
            before = tree_cpu_s(target.pid) if target.pid is not None else 0.0
            loaded = wrk(target, 32, seconds)
            if target.pid is not None and loaded.requests:
                cpu[name].append((tree_cpu_s(target.pid) - before) / loaded.requests * 1e6)
            runs[name]["c32"].append(loaded.summary())
            runs[name]["c1"].append(wrk(target, 1, seconds).summary())
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, by in runs.items():
        results[name] = {"c32": median_run(by["c32"], "rps"), "c1": median_run(by["c1"], "p50_ms")}
        if cpu[name]:
            results[name]["cpu_us_per_request"] = {"c32": round(statistics.median(cpu[name]), 1)}
        results[name]["rounds"] = {"count": rounds}
    return results


def median_run(runs: list[dict[str, float]], key: str) -> dict[str, float]:
    """The run whose ``key`` is the median (the upper one of an even count)."""
    return sorted(runs, key=lambda run: run.get(key, 0.0))[len(runs) // 2]


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in ms of durations in seconds."""
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": round(cut[49] * 1000, 2),
        "p90_ms": round(cut[89] * 1000, 2),
        "p99_ms": round(cut[98] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


@dataclass(frozen=True)
class Comparison:
    """Ratios between measured targets of one run (``results[name]["c32"|"c1"]``)."""

    results: Mapping[str, Mapping[str, Mapping[str, float]]]

    def rps_ratio(self, a: str, b: str) -> float:
        """a's requests/s at 32 connections over b's."""
        return round(self.results[a]["c32"]["rps"] / self.results[b]["c32"]["rps"], 3)

    def cpu_ratio(self, a: str, b: str) -> float | None:
        """a's CPU time per request at 32 connections over b's (below 1: a does the same work with less), when both
        were measured."""
        mine = self.results[a].get("cpu_us_per_request", {}).get("c32")
        theirs = self.results[b].get("cpu_us_per_request", {}).get("c32")
        return round(mine / theirs, 3) if mine and theirs else None

    def added_ms(self, a: str, b: str) -> float:
        """a's p50 at one connection minus b's: what a adds in front of b."""
        return round(self.results[a]["c1"].get("p50_ms", 0.0) - self.results[b]["c1"].get("p50_ms", 0.0), 3)


# -- the peers: a proxy of ours against Go, nginx and aiohttp, in one run ----------------------------------------

Results = dict[str, dict[str, dict[str, float]]]


def take_turns(
    workdir: Path,
    upstream: Running,
    proxies: Mapping[str, AbstractContextManager[Running]],
    path: str,
    rounds: int,
    seconds: int,
) -> tuple[Results, dict[str, dict[str, float]]]:
    """``upstream`` called directly ("nginx"), ``proxies`` (not yet started), nginx as a proxy and the aiohttp
    proxy, each in front of ``upstream``: all up at once, taking turns (interleaved), each loaded at ``path``. The
    results, and each proxy's resident memory after the rounds."""
    with ExitStack() as stack:
        peers = {"nginx": upstream}
        peers.update({name: stack.enter_context(proxy) for name, proxy in proxies.items()})
        peers["nginx_proxy"] = stack.enter_context(nginx(workdir, upstream.port, name="nginx-proxy"))
        peers["aiohttp_proxy"] = stack.enter_context(aiohttp_proxy(upstream.port))
        targets = {name: Target(each.port, path, pid=each.pid) for name, each in peers.items()}
        results = interleaved(targets, seconds, rounds)
        memory = {name: tree_rss_mib(each.pid) for name, each in peers.items() if name != "nginx"}
    return results, memory


def peer_ratios(compare: Comparison, ours: str, go: str) -> dict[str, float]:
    """``ours`` against nginx as a proxy, the aiohttp proxy and, when it was measured, the Go peer ``go``."""
    ratios = {
        f"{ours}_vs_nginx_proxy_rps": compare.rps_ratio(ours, "nginx_proxy"),
        f"{ours}_vs_aiohttp_proxy_rps": compare.rps_ratio(ours, "aiohttp_proxy"),
        f"{ours}_added_p50_ms_c1": compare.added_ms(ours, "nginx"),
        "nginx_proxy_added_p50_ms_c1": compare.added_ms("nginx_proxy", "nginx"),
        "aiohttp_proxy_added_p50_ms_c1": compare.added_ms("aiohttp_proxy", "nginx"),
    }
    if go in compare.results:
        ratios[f"{ours}_vs_{go}_rps"] = compare.rps_ratio(ours, go)
        cpu = compare.cpu_ratio(ours, go)
        if cpu is not None:
            ratios[f"{ours}_vs_{go}_cpu_per_request"] = cpu
        ratios[f"{go}_added_p50_ms_c1"] = compare.added_ms(go, "nginx")
        # The target is <= 0; negative is less added than Go.
        ratios[f"{ours}_added_p50_ms_c1_minus_go"] = round(
            compare.added_ms(ours, "nginx") - compare.added_ms(go, "nginx"), 3
        )
    return ratios


def peer_report(
    benchmark: str,
    *,
    at_start: dict[str, object],
    network: str,
    seconds: int,
    rounds: int,
    go_peer: dict[str, object],
    results: Results,
    ratios: dict[str, float],
    memory: dict[str, dict[str, float]],
) -> dict[str, object]:
    """The JSON the watchdog and gateway benches print."""
    return {
        "benchmark": benchmark,
        "machine": {**at_start, "load_avg_at_end": machine()["load_avg"]},
        "network": network,
        "wrk": {"threads": 1, "duration_s": seconds, "body_bytes": len(BODY), "peer_rounds": rounds},
        "go_peer": go_peer,
        "results": results,
        "ratios": ratios,
        "rss_after_load": memory,
    }


# -- the gateway --------------------------------------------------------------------------------------------------


def gateway_state(workdir: Path) -> None:
    """A state dir for ``python -m gateway`` with no provider: the admin secret, and a hosts file in which the
    function ``bench`` has one replica at 127.0.0.1 (the bench's upstream on the gateway's function port)."""
    secrets = workdir / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "basic-auth-user").write_text("admin\n")
    (secrets / "basic-auth-password").write_text("bench\n")
    replica = Replica(FUNCTION, "openfaas-fn", IPv4Address("127.0.0.1"))
    write_hosts(workdir / "hosts", IPv4Address("10.62.0.1"), [replica])


@contextmanager
def gateway(workdir: Path, function_port: int, **env: str) -> Iterator[Running]:
    """``python -m gateway`` on the state of gateway_state(workdir), the function on ``function_port``; ``env``
    adds PYFAASD_ settings. Ready once ``/function/bench`` answers 200."""
    port = free_port()
    full = {
        "PYFAASD_GATEWAY_ADDR": f"127.0.0.1:{port}",
        "PYFAASD_STATE_DIR": str(workdir),
        "PYFAASD_PROVIDER_URL": f"http://127.0.0.1:{free_port()}",  # not needed: the hosts file has the function
        "PYFAASD_FUNCTION_PORT": str(function_port),
        "PYFAASD_LOG_LEVEL": "warning",
        **env,
    }
    with process([sys.executable, "-m", "gateway"], full) as proc:
        wait_port(port, "/_/health")
        wait_port(port, f"/function/{FUNCTION}")
        yield Running(port, proc.pid)


# -- the Go peers (scripts/build-go-peers) ------------------------------------------------------------------------


@dataclass(frozen=True)
class GoPeer:
    """A Go binary scripts/build-go-peers built, and what it recorded about it."""

    binary: Path
    version: dict[str, object] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        keys = ("describe", "commit", "go", "built_at")
        return {"binary": str(self.binary), **{key: self.version[key] for key in keys if key in self.version}}


def go_peer(name: str, binary: str) -> GoPeer | None:
    """The peer under GO_PEERS/<name>/<binary>, or None when it was not built."""
    path = GO_PEERS / name / binary
    if not os.access(path, os.X_OK):
        return None
    try:
        version = dict(json.loads((GO_PEERS / name / "version.json").read_text()))
    except (OSError, ValueError):
        version = {}
    return GoPeer(path, version)


def go_peer_state(name: str, binary: str, ports: tuple[int, ...]) -> tuple[GoPeer | None, dict[str, object]]:
    """The peer if it can run here (built, and its fixed ports free), and what the report says about it."""
    peer = go_peer(name, binary)
    if peer is None:
        return None, {"absent": f"not built: run scripts/build-go-peers (looked in {GO_PEERS / name})"}
    taken = ports_taken(ports)
    if taken:
        return None, {
            **peer.describe(),
            "skipped": f"its fixed ports {taken} are taken; run the bench as root (own network namespace)",
        }
    return peer, peer.describe()
