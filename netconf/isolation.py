"""What functions may not reach: host ports other than the gateway's, and other bridges (nftables).

The iptables rules (firewall.py) only *accept* what Docker's FORWARD DROP policy would refuse. The restrictions
live in an nftables table of their own, ``ip pyfaasd-<bridge>``, hooked just before iptables' filter chains:
a packet dropped or rejected in any base chain is gone, whatever another table accepts, so the two never need
to agree on an order. ::

    chain input    (hook input, priority filter - 1): traffic from the functions to the host itself
      iifname <bridge> ct state established,related accept     replies to the host's own connections
      iifname <bridge> tcp dport { <gateway>, <allowed> } accept
      iifname <bridge> udp dport { <allowed/udp> } accept
      iifname <bridge> reject                                   every other host service (tcp reset, else icmp)
    chain forward  (hook forward, priority filter - 1): traffic from the functions through the host
      iifname <bridge> oifname != <bridge> oifkind "bridge" reject   other bridges: Docker's, libvirt's, ...

Without it a function reached every host service bound to 0.0.0.0 through the bridge IP (the INPUT chain was
untouched), and every container on another bridge (our outward ACCEPT came before Docker's isolation). The
outside world and functions on this bridge are still reached (the latter can be restricted with bridge port
isolation: see ``NetConfig.isolate_functions``). ``meta oifkind`` matches the kind of the output interface, so a
bridge created later (``docker network create``) is covered without a rule per bridge.

The table is written in one ``nft -f`` transaction (created, emptied and filled), so a rewrite never leaves a
moment without it, and writing it again is a no-op. nftables is used here because iptables cannot match an
interface's kind; it needs the ``nft`` command (Debian's ``nftables``).
"""

from __future__ import annotations

from netconf.command import execute
from netconf.config import NetConfig
from netconf.errors import NftablesError

NFT = "nft"
TABLE_PREFIX = "pyfaasd-"


def table_for(bridge: str) -> str:
    return f"{TABLE_PREFIX}{bridge}"


def ruleset(config: NetConfig) -> str:
    """The ``nft -f`` script that (re)creates the table of ``config.bridge`` atomically."""
    bridge = config.bridge
    table = table_for(bridge)
    tcp = sorted({config.gateway_port, *(p.port for p in config.host_ports if p.protocol == "tcp")})
    udp = sorted({p.port for p in config.host_ports if p.protocol == "udp"})
    lines = [
        f"table ip {table}",  # so that the delete below never fails on a first run
        f"delete table ip {table}",
        f"table ip {table} {{",
        "  chain input {",
        "    type filter hook input priority filter - 1; policy accept;",
        f'    iifname "{bridge}" ct state established,related accept',
        f'    iifname "{bridge}" tcp dport {{ {", ".join(map(str, tcp))} }} accept',
    ]
    if udp:
        lines.append(f'    iifname "{bridge}" udp dport {{ {", ".join(map(str, udp))} }} accept')
    lines += [
        f'    iifname "{bridge}" meta l4proto tcp reject with tcp reset',
        f'    iifname "{bridge}" reject with icmp type admin-prohibited',
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter - 1; policy accept;",
        f'    iifname "{bridge}" oifname != "{bridge}" meta oifkind "bridge" meta l4proto tcp reject with tcp reset',
        f'    iifname "{bridge}" oifname != "{bridge}" meta oifkind "bridge" reject with icmp type admin-prohibited',
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


async def ensure_isolation(config: NetConfig) -> None:
    """Write the table (idempotent: the same script gives the same table)."""
    await _run(["-f", "-"], ruleset(config))


async def remove_isolation(bridge: str) -> None:
    """Delete the table; a missing one is fine."""
    table = table_for(bridge)
    await _run(["-f", "-"], f"table ip {table}\ndelete table ip {table}\n")


async def list_isolation(bridge: str) -> list[str]:
    """The table in ``nft list`` form, one rule a line, prefixed ``nft``; empty when it is not there."""
    code, out, _ = await _exec(["list", "table", "ip", table_for(bridge)])
    if code != 0:
        return []
    return [f"nft {line.strip()}" for line in out.splitlines() if line.strip() and line.strip() != "}"]


async def _run(args: list[str], stdin: str) -> str:
    code, out, err = await _exec(args, stdin)
    if code != 0:
        raise NftablesError(f"nft {' '.join(args)} failed (exit {code}): {err.strip()}")
    return out


async def _exec(args: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    return await execute(
        [NFT, *args],
        NftablesError,
        "netconf needs it to keep functions off host ports and other bridges (apt-get install nftables)",
        stdin,
    )
