"""Test networks that never touch the host's own: random bridges in a subnet of 10.201.0.0/16 no route uses."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from ipaddress import IPv4Network

TEST_SUPERNET = IPv4Network("10.201.0.0/16")


def free_test_subnet(prefixlen: int = 24) -> IPv4Network:
    """A random subnet of 10.201.0.0/16 that no route on the host overlaps (never 10.62/16 or 172.17/16)."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True)
    used = []
    for line in routes.stdout.splitlines():
        with contextlib.suppress(ValueError, IndexError):
            used.append(IPv4Network(line.split()[0], strict=False))
    candidates = list(TEST_SUPERNET.subnets(new_prefix=prefixlen))
    for _ in range(100):
        subnet = candidates[secrets.randbelow(len(candidates))]
        if not any(subnet.overlaps(u) for u in used if u.prefixlen > 0):
            return subnet
    raise RuntimeError("no free test subnet in 10.201.0.0/16")


def leftovers(bridge: str) -> list[str]:
    """Anything of this bridge still on the host: links on or named after it, iptables lines naming it, its nft
    table."""
    found = []
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    found += [line for line in links.splitlines() if f" {bridge}:" in line or f"master {bridge} " in line]
    for table in ("filter", "nat"):
        rules = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True, check=True).stdout
        found += [line for line in rules.splitlines() if bridge in line]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    found += [line for line in tables.splitlines() if line.strip() == f"table ip pyfaasd-{bridge}"]
    return found


def force_cleanup(bridge: str) -> None:
    """Last resort if ``down`` failed: remove the bridge and its chains directly (ports go with their netns)."""
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    chains = (("filter", "FORWARD", f"PYFAASD-FWD-{bridge}"), ("nat", "POSTROUTING", f"PYFAASD-NAT-{bridge}"))
    for table, builtin, chain in chains:
        for _ in range(10):
            delete = ["iptables", "-w", "-t", table, "-D", builtin, "-j", chain]
            if subprocess.run(delete, capture_output=True, check=False).returncode:
                break
        subprocess.run(["iptables", "-w", "-t", table, "-F", chain], capture_output=True, check=False)
        subprocess.run(["iptables", "-w", "-t", table, "-X", chain], capture_output=True, check=False)
    subprocess.run(["nft", "delete", "table", "ip", f"pyfaasd-{bridge}"], capture_output=True, check=False)
