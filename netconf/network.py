"""The async API the provider calls: bridge, allocation, attach/detach, down and status.

Everything that blocks (netlink, /proc/sys, the allocation store) runs in a worker thread through
``asyncio.to_thread``, so this works on the stdlib loop and under uvloop alike, and never blocks the loop.
iptables runs as a subprocess. A cancelled call stops waiting, but a netlink step already running in its
thread finishes; every step is idempotent, so the next call picks up from wherever it ended.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

import structlog

from netconf import _netlink, firewall, isolation
from netconf.config import NetConfig, mac_for
from netconf.errors import AddressInvalidError
from netconf.ipam import Allocation, Ipam

log = structlog.get_logger("netconf")

CONTAINER_IFNAME = "eth0"
# Host ends are named from the container IP: "vpf" + 8 hex digits = 11 characters (IFNAMSIZ allows 15).
HOST_IFNAME_PREFIX = "vpf"
IP_FORWARD_SYSCTL = "net/ipv4/ip_forward"

NetnsTarget = int | str | os.PathLike[str]


def host_ifname(ip: IPv4Address) -> str:
    """The host end of the veth of ``ip``, e.g. vpf0a3e0002 for 10.62.0.2."""
    return HOST_IFNAME_PREFIX + ip.packed.hex()


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    name: str
    index: int
    mac: str
    up: bool
    addresses: tuple[IPv4Interface, ...]
    ports: tuple[str, ...]  # host ends of attached containers
    created: bool = False  # ensure_bridge made it just now


@dataclass(frozen=True, slots=True)
class Attachment:
    """A container connected to the bridge."""

    ip: IPv4Address
    interface: IPv4Interface  # address/prefix of eth0
    mac: str
    gateway: IPv4Address  # the bridge IP
    host_ifname: str
    netns: str  # the namespace file it was attached through
    created: bool  # False when it was already attached (a no-op)


@dataclass(frozen=True, slots=True)
class NetStatus:
    config: NetConfig
    bridge: BridgeInfo | None
    ip_forward: bool
    rules: tuple[str, ...]  # iptables -S lines prefixed "-t <table>", then the nftables table's lines ("nft ...")
    allocations: tuple[Allocation, ...]


class Network:
    """The function network of one bridge. Cheap to create; hold one per process to reuse the store cache."""

    def __init__(self, config: NetConfig) -> None:
        self._config = config
        self._ipam = Ipam(config.ipam_path, config.subnet)

    @property
    def config(self) -> NetConfig:
        return self._config

    # -- bridge ----------------------------------------------------------------------------------------

    async def ensure_bridge(self) -> BridgeInfo:
        """Create or adopt the bridge, turn IPv4 forwarding on and install the iptables rules. Idempotent."""
        cfg = self._config
        state, created = await asyncio.to_thread(
            _netlink.ensure_bridge, cfg.bridge, cfg.bridge_mac, cfg.bridge_interface
        )
        await asyncio.to_thread(_netlink.write_sysctl, IP_FORWARD_SYSCTL, "1")
        added = await firewall.ensure_rules(cfg.bridge, cfg.subnet)
        await isolation.ensure_isolation(cfg)
        log.info(
            "bridge_ensured",
            bridge=cfg.bridge,
            address=str(cfg.bridge_interface),
            created=created,
            rules_added=len(added),
        )
        return _bridge_info(state, created=created)

    async def check_bridge(self) -> str | None:
        """What is wrong with the bridge, or None when it exists, is up, and has its MAC and address.

        One netlink dump, cheap enough to call every second: the provider watches with it for a bridge that
        someone deleted or took down under running functions (``ensure_bridge`` repairs it).
        """
        cfg = self._config
        state = await asyncio.to_thread(_netlink.bridge_state, cfg.bridge)
        if state is None:
            return f"bridge {cfg.bridge} does not exist"
        if state.link.kind != "bridge":
            return f"link {cfg.bridge} is a {state.link.kind or 'plain device'}, not a bridge"
        if not state.link.up:
            return f"bridge {cfg.bridge} is down"
        if cfg.bridge_interface not in state.addresses:
            return f"bridge {cfg.bridge} lost its address {cfg.bridge_interface}"
        if state.link.mac != cfg.bridge_mac:
            return f"bridge {cfg.bridge} has MAC {state.link.mac}, not {cfg.bridge_mac}"
        return None

    async def down(self) -> None:
        """Remove the rules, the bridge (with every attached veth) and all allocations. Idempotent."""
        cfg = self._config
        removed = await asyncio.to_thread(_netlink.delete_bridge, cfg.bridge)
        await firewall.remove_rules(cfg.bridge)
        await isolation.remove_isolation(cfg.bridge)
        await asyncio.to_thread(self._ipam.clear)
        log.info("network_removed", bridge=cfg.bridge, links_removed=len(removed))

    async def status(self) -> NetStatus:
        cfg = self._config
        state = await asyncio.to_thread(_netlink.bridge_state, cfg.bridge)
        forward = await asyncio.to_thread(_read_sysctl, IP_FORWARD_SYSCTL)
        rules = [*await firewall.list_rules(cfg.bridge), *await isolation.list_isolation(cfg.bridge)]
        allocations = await asyncio.to_thread(self._ipam.allocations)
        return NetStatus(
            config=cfg,
            bridge=None if state is None else _bridge_info(state),
            ip_forward=forward == "1",
            rules=tuple(rules),
            allocations=tuple(allocations),
        )

    # -- addresses -------------------------------------------------------------------------------------

    async def allocate(self, owner: str) -> IPv4Address:
        """An address for ``owner`` (the same one again if it has one). Raises SubnetFullError when full."""
        return await asyncio.to_thread(self._ipam.allocate, owner)

    async def release(self, ip: IPv4Address) -> str | None:
        """Free ``ip``; returns its former owner."""
        return await asyncio.to_thread(self._ipam.release, ip)

    async def lookup(self, owner: str) -> IPv4Address | None:
        return await asyncio.to_thread(self._ipam.lookup, owner)

    async def allocations(self) -> list[Allocation]:
        return await asyncio.to_thread(self._ipam.allocations)

    async def reconcile(self, owners: Iterable[str]) -> list[Allocation]:
        """Free the addresses of owners that no longer exist; returns what was freed."""
        freed = await asyncio.to_thread(self._ipam.reconcile, list(owners))
        for allocation in freed:
            log.info("address_reclaimed", ip=str(allocation.ip), owner=allocation.owner)
        return freed

    # -- containers ------------------------------------------------------------------------------------

    async def attach(self, netns: NetnsTarget, ip: IPv4Address) -> Attachment:
        """Connect a network namespace (a PID, or a path such as /proc/PID/ns/net) to the bridge as ``ip``.

        Creates a veth pair, the host end on the bridge and the container end as ``eth0`` with ``ip``, a MAC
        derived from it, a default route via the bridge IP, IPv6 off, and permanent neighbour entries both
        ways. Attaching an attached container again changes nothing. The address is not allocated here: use
        ``allocate`` first, or ``connect``.
        """
        cfg = self._config
        self._check_usable(ip)
        spec_ip = IPv4Interface((ip, cfg.subnet.prefixlen))
        path = _netlink.netns_path(netns)

        def work() -> _netlink.VethState:
            with _netlink.open_netns(path) as fd:
                return _netlink.attach(
                    _netlink.VethSpec(
                        bridge=cfg.bridge,
                        host_name=host_ifname(ip),
                        netns_fd=fd,
                        ifname=CONTAINER_IFNAME,
                        interface=spec_ip,
                        mac=mac_for(ip),
                        gateway=cfg.bridge_ip,
                        gateway_mac=cfg.bridge_mac,
                        isolated=cfg.isolate_functions,
                    )
                )

        state = await asyncio.to_thread(work)
        if state.created:
            log.info("container_attached", ip=str(ip), netns=str(path), host_ifname=host_ifname(ip))
        return Attachment(
            ip=ip,
            interface=spec_ip,
            mac=mac_for(ip),
            gateway=cfg.bridge_ip,
            host_ifname=host_ifname(ip),
            netns=str(path),
            created=state.created,
        )

    async def connect(self, netns: NetnsTarget, owner: str) -> Attachment:
        """``allocate(owner)`` then ``attach``; a newly allocated address is released if attaching fails.

        Re-connecting a known owner after a container restart (a new namespace) gives it the same address.
        """
        known = await self.lookup(owner)
        ip = await self.allocate(owner)
        try:
            return await self.attach(netns, ip)
        except Exception:
            # Not on cancellation: the attach thread may still finish, and its address must stay allocated.
            # The owner gets the same address on the next connect, or reconcile frees it.
            if known is None:
                await self.release(ip)
            raise

    async def detach(self, ip: IPv4Address) -> bool:
        """Remove the host end of ``ip`` (its container end goes too) and release the address.

        Returns True if a link was removed. Safe to call for an address that is not attached.
        """
        self._check_usable(ip)
        removed = await asyncio.to_thread(_netlink.detach, self._config.bridge, host_ifname(ip), ip)
        await self.release(ip)
        if removed:
            log.info("container_detached", ip=str(ip))
        return removed

    def _check_usable(self, ip: IPv4Address) -> None:
        subnet = self._config.subnet
        if not isinstance(ip, IPv4Address) or ip not in subnet:
            raise AddressInvalidError(f"{ip} is not an IPv4 address in subnet {subnet}")
        if ip in (subnet.network_address, self._config.bridge_ip, subnet.broadcast_address):
            raise AddressInvalidError(f"{ip} is the network, bridge or broadcast address of {subnet}")


def _bridge_info(state: _netlink.BridgeState, *, created: bool = False) -> BridgeInfo:
    link = state.link
    return BridgeInfo(
        name=link.name,
        index=link.index,
        mac=link.mac,
        up=link.up,
        addresses=state.addresses,
        ports=tuple(sorted(port.name for port in state.ports)),
        created=created,
    )


def _read_sysctl(path: str) -> str:
    with open(f"/proc/sys/{path}") as f:
        return f.read().strip()
