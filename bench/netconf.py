"""Benchmark netconf: attaching a namespace to the bridge, and allocating from a nearly full /16.

Prints one JSON object. Baselines are measured in the same run, on the same machine:

* attach: ``Network.connect`` (allocate + attach) into 20 fresh namespaces, median and p90; the baseline does
  the same set-up with iproute2 commands (``ip link add ... peer ... netns``, address, route, neighbours), which
  is what a shell or CNI-plugin style implementation pays.
* allocate: ``Ipam.allocate`` (search + durable write of the 65k-entry store) in a /16 with a few scattered free
  addresses; the baseline is the search alone done as a Python loop over the addresses, which netconf avoids.

The attach part needs root; without it that part reports ``"skipped"``. Run: ``.venv/bin/python bench/netconf.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path and "netconf" would import this very file.
if Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from netconf import NetConfig, Network, mac_for
from netconf.ipam import Ipam

ATTACHES = 20
ALLOCATIONS = 20
FREE_IN_16 = 64  # free addresses left in the nearly full /16


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": _ms(statistics.median(ordered)),
        "p90_ms": _ms(ordered[int(len(ordered) * 0.9) - 1]),
        "max_ms": _ms(ordered[-1]),
    }


def _free_subnet() -> IPv4Network:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True)
    used = []
    for line in out.stdout.splitlines():
        with contextlib.suppress(ValueError, IndexError):
            used.append(IPv4Network(line.split()[0], strict=False))
    candidates = list(IPv4Network("10.201.0.0/16").subnets(new_prefix=24))
    for _ in range(100):
        subnet = candidates[secrets.randbelow(len(candidates))]
        if not any(subnet.overlaps(u) for u in used if u.prefixlen > 0):
            return subnet
    raise RuntimeError("no free subnet in 10.201.0.0/16")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _baseline_attach(bridge: str, ns: str, ip: IPv4Address, prefixlen: int, gateway: IPv4Address) -> None:
    """The same set-up as netconf's attach, with iproute2 commands."""
    host = f"vbl{ip.packed.hex()}"
    peer = ("peer", "name", "eth0", "address", mac_for(ip), "netns", ns)
    _ip("link", "add", host, "master", bridge, "type", "veth", *peer)
    _ip("link", "set", host, "up")
    _ip("-n", ns, "addr", "add", f"{ip}/{prefixlen}", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "route", "replace", "default", "via", str(gateway))
    _ip("-n", ns, "neigh", "replace", str(gateway), "lladdr", mac_for(gateway), "dev", "eth0", "nud", "permanent")
    _ip("neigh", "replace", str(ip), "lladdr", mac_for(ip), "dev", bridge, "nud", "permanent")


async def bench_attach() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {"skipped": "needs root"}
    state = Path(tempfile.mkdtemp(prefix="pft-bench-"))
    config = NetConfig(bridge=f"pft{secrets.token_hex(4)}", subnet=_free_subnet(), state_dir=state)
    network = Network(config)
    namespaces = [f"pft-b{secrets.token_hex(4)}" for _ in range(2 * ATTACHES)]
    try:
        await network.ensure_bridge()
        for ns in namespaces:
            _ip("netns", "add", ns)
        ours, noop, detach, baseline = [], [], [], []
        attached = []
        for i, ns in enumerate(namespaces[:ATTACHES]):
            started = time.perf_counter()
            attachment = await network.connect(ns, f"bench-{i}")
            ours.append(time.perf_counter() - started)
            attached.append(attachment)
        for i, ns in enumerate(namespaces[:ATTACHES]):
            started = time.perf_counter()
            await network.connect(ns, f"bench-{i}")
            noop.append(time.perf_counter() - started)
        base_ip = config.subnet.network_address + 100
        for i, ns in enumerate(namespaces[ATTACHES:]):
            started = time.perf_counter()
            _baseline_attach(config.bridge, ns, base_ip + i, config.subnet.prefixlen, config.bridge_ip)
            baseline.append(time.perf_counter() - started)
        for attachment in attached:
            started = time.perf_counter()
            await network.detach(attachment.ip)
            detach.append(time.perf_counter() - started)
        return {
            "attaches": ATTACHES,
            "connect": _summary(ours),
            "reattach_noop": _summary(noop),
            "detach": _summary(detach),
            "baseline_iproute2_attach": _summary(baseline),
            "speedup_vs_baseline": round(statistics.median(baseline) / statistics.median(ours), 2),
        }
    finally:
        await network.down()
        for ns in namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        for path in sorted(state.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        state.rmdir()


def bench_allocate() -> dict[str, Any]:
    subnet = IPv4Network("10.62.0.0/16")
    base = int(subnet.network_address)
    size = subnet.num_addresses
    step = (size - 3) // FREE_IN_16
    free = {2 + 7 + k * step for k in range(FREE_IN_16)}
    allocations = {
        str(IPv4Address(base + off)): f"openfaas-fn.fn{off}.0" for off in range(2, size - 1) if off not in free
    }
    with tempfile.TemporaryDirectory(prefix="pft-bench-") as tmp:
        store = Path(tmp) / "ipam.json"
        doc = {"version": 1, "subnet": str(subnet), "last": None, "allocations": allocations}
        store.write_text(json.dumps(doc))
        ipam = Ipam(store, subnet)
        started = time.perf_counter()
        ipam.lookup("nobody")
        cold_load = time.perf_counter() - started
        samples = []
        for i in range(ALLOCATIONS):
            started = time.perf_counter()
            ipam.allocate(f"bench-{i}")
            samples.append(time.perf_counter() - started)
        store_bytes = store.stat().st_size

    # The free-address search alone, round-robin from the same cursor: netconf's bytearray.find against the
    # baseline, a Python loop over the offsets. Neither includes persistence.
    taken = [0, 1, size - 1, *(int(IPv4Address(ip)) - base for ip in allocations)]
    search = _round_robin(taken, size, lambda bitmap, start: bitmap.find(0, start))
    baseline = _round_robin(taken, size, _python_scan)
    # Worst case for a scan: the only free address sits just behind the cursor, so the search wraps around.
    worst = bytearray(b"\x01") * size
    worst[size // 2 - 1] = 0
    started = time.perf_counter()
    worst.find(0, size // 2)
    worst.find(0, 0)
    worst_find = time.perf_counter() - started
    started = time.perf_counter()
    _python_scan(worst, size // 2)
    _python_scan(worst, 0)
    worst_scan = time.perf_counter() - started
    return {
        "subnet": str(subnet),
        "allocated_before": len(allocations),
        "free_before": FREE_IN_16,
        "store_bytes": store_bytes,
        "cold_load_ms": _ms(cold_load),
        "allocate": _summary(samples),
        "search_only_bytearray": _summary(search),
        "baseline_python_scan_search_only": _summary(baseline),
        "worst_case_search_ms": {"bytearray": _ms(worst_find), "baseline_python_scan": _ms(worst_scan)},
        "allocate_typical_500": _typical(),
    }


def _typical() -> dict[str, float]:
    """Allocation cost in a store of a realistic size: 500 containers."""
    with tempfile.TemporaryDirectory(prefix="pft-bench-") as tmp:
        ipam = Ipam(Path(tmp) / "ipam.json", IPv4Network("10.62.0.0/16"))
        for i in range(500):
            ipam.allocate(f"warm-{i}")
        samples = []
        for i in range(ALLOCATIONS):
            started = time.perf_counter()
            ipam.allocate(f"bench-{i}")
            samples.append(time.perf_counter() - started)
    return _summary(samples)


def _python_scan(bitmap: bytearray, start: int) -> int:
    return next((offset for offset in range(start, len(bitmap)) if not bitmap[offset]), -1)


def _round_robin(taken: list[int], size: int, find: Callable[[bytearray, int], int]) -> list[float]:
    bitmap = bytearray(size)
    for offset in taken:
        bitmap[offset] = 1
    cursor = size // 2
    samples = []
    for _ in range(ALLOCATIONS):
        started = time.perf_counter()
        found = find(bitmap, cursor + 1)
        if found < 0:
            found = find(bitmap, 0)
        samples.append(time.perf_counter() - started)
        bitmap[found] = 1
        cursor = found
    return samples


def main() -> int:
    result = {
        "python": sys.version.split()[0],
        "attach": asyncio.run(bench_attach()),
        "allocate_nearly_full_16": bench_allocate(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
