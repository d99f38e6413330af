"""Every netlink call of netconf, and the only module that imports pyroute2.

The functions here are synchronous and block: callers run them in a worker thread (``asyncio.to_thread``),
never on an event loop thread. pyroute2's ``IPRoute`` refuses to run inside a running loop and its async API
fails under uvloop (svinota/pyroute2#1335); a worker thread works under both loops.

Work inside a container's network namespace happens in a short-lived thread of its own that calls
``setns(2)`` and then exits, so no pooled thread is ever left in a foreign namespace. ``setns`` with
``CLONE_NEWNET`` only moves the calling thread; sockets it opens and ``/proc/sys/net`` files it writes belong
to that namespace.

Results are frozen dataclasses; pyroute2's messages never leave this module.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute, NetlinkError

from netconf.errors import (
    AddressInUseError,
    BridgeConflictError,
    BridgeMissingError,
    NetlinkOperationError,
    NetnsBusyError,
    NetnsNotFoundError,
)

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
IFF_UP = 0x1
NETNS_RUN_DIR = Path("/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class Link:
    """A network interface as netlink reports it."""

    index: int
    name: str
    kind: str | None  # "bridge", "veth", ... or None for a plain device
    mac: str
    up: bool  # administratively up (IFF_UP)
    master: int | None  # index of the bridge this is a port of
    peer_index: int | None  # IFLA_LINK: for a veth, the peer's index in the peer's namespace


@dataclass(frozen=True, slots=True)
class BridgeState:
    link: Link
    addresses: tuple[IPv4Interface, ...]
    ports: tuple[Link, ...]


@dataclass(frozen=True, slots=True)
class VethSpec:
    """What ``attach`` sets up: a veth from ``bridge`` into the namespace open as ``netns_fd``."""

    bridge: str
    host_name: str  # host end, a port of the bridge
    netns_fd: int
    ifname: str  # container end, inside the namespace
    interface: IPv4Interface  # container address/prefix
    mac: str  # container MAC
    gateway: IPv4Address  # the bridge IP: default route and permanent neighbour
    gateway_mac: str
    isolated: bool = False  # bridge port isolation: no traffic to other isolated ports (other functions)


@dataclass(frozen=True, slots=True)
class VethState:
    host_index: int
    container_index: int
    created: bool  # False when everything was already in place


# -- namespaces ----------------------------------------------------------------------------------------


def netns_path(target: int | str | os.PathLike[str]) -> Path:
    """The namespace file of a PID, a path, or a bare name under /run/netns (``ip netns add``)."""
    if isinstance(target, bool):
        raise TypeError("netns must be a PID, a path or a name")
    if isinstance(target, int):
        return Path(f"/proc/{target}/ns/net")
    text = os.fspath(target)
    return Path(text) if "/" in text else NETNS_RUN_DIR / text


@contextlib.contextmanager
def open_netns(target: int | str | os.PathLike[str]) -> Iterator[int]:
    """Open a network namespace read-only for the duration of the block; yields the fd."""
    path = netns_path(target)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NetnsNotFoundError(f"network namespace {path} cannot be opened: {e.strerror}") from e
    try:
        yield fd
    finally:
        os.close(fd)


def run_in_netns(netns_fd: int, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread that has entered the namespace ``netns_fd``; return its result."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            if _libc.setns(netns_fd, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise NetnsNotFoundError(f"cannot enter network namespace (fd {netns_fd}): {os.strerror(code)}")
            outcome.append(fn())
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=target, name="netconf-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def write_sysctl(path: str, value: str, *, missing_ok: bool = False) -> None:
    """Write a /proc/sys file (relative path, e.g. ``net/ipv4/ip_forward``) of the calling thread's namespace."""
    full = f"/proc/sys/{path}"
    try:
        with open(full, "r+") as f:
            if f.read().strip() != value:
                f.seek(0)
                f.write(value)
    except FileNotFoundError:
        if not missing_ok:
            raise


def disable_ipv6(ifname: str) -> None:
    """Turn IPv6 off on one interface (no link-local address, no router solicitations)."""
    write_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "1", missing_ok=True)


# -- links ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _netlink(operation: str) -> Iterator[None]:
    """Turn pyroute2's NetlinkError into our typed error, naming what we tried to do."""
    try:
        yield
    except NetlinkError as e:
        raise NetlinkOperationError(operation, int(e.code), os.strerror(int(e.code))) from e


def _link(msg: Any) -> Link:
    kind = msg.get(("linkinfo", "kind"))
    master = msg.get("master")
    peer = msg.get("link")
    return Link(
        index=int(msg["index"]),
        name=str(msg.get("ifname")),
        kind=None if kind is None else str(kind),
        mac=str(msg.get("address") or ""),
        up=bool(int(msg["flags"]) & IFF_UP),
        master=None if not master else int(master),
        peer_index=None if peer is None else int(peer),
    )


def _get_link(ipr: Any, name: str) -> Link | None:
    try:
        msgs = ipr.link("get", ifname=name)
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return None
        raise NetlinkOperationError(f"get link {name}", int(e.code), os.strerror(int(e.code))) from e
    return _link(msgs[0])


def _ipv4_addresses(ipr: Any, index: int) -> tuple[IPv4Interface, ...]:
    with _netlink(f"list addresses of link {index}"):
        msgs = ipr.addr("dump", index=index, family=socket.AF_INET)
    return tuple(IPv4Interface((str(m.get("address")), int(m["prefixlen"]))) for m in msgs)


def _ports(ipr: Any, bridge_index: int) -> tuple[Link, ...]:
    with _netlink(f"list ports of bridge {bridge_index}"):
        msgs = ipr.link("dump", master=bridge_index)
    return tuple(_link(m) for m in msgs)


def _add_address(ipr: Any, link: Link, interface: IPv4Interface) -> None:
    try:
        ipr.addr("add", index=link.index, address=str(interface.ip), prefixlen=interface.network.prefixlen)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise NetlinkOperationError(f"add {interface} to {link.name}", int(e.code), os.strerror(int(e.code))) from e


# -- bridge --------------------------------------------------------------------------------------------


def ensure_bridge(name: str, mac: str, interface: IPv4Interface) -> tuple[BridgeState, bool]:
    """Create the bridge, or adopt the existing one: fixed MAC, ``interface`` as address, IPv6 off, up.

    Returns the bridge and whether it was created. Addresses the bridge already has are left alone.
    """
    with IPRoute() as ipr:
        link = _get_link(ipr, name)
        created = link is None
        if link is None:
            try:
                # A bridge created over netlink has STP off, so a new port forwards at once.
                ipr.link("add", ifname=name, kind="bridge", address=mac)
            except NetlinkError as e:
                if e.code != errno.EEXIST:  # lost a race with another process: adopt its bridge
                    raise NetlinkOperationError(f"create bridge {name}", int(e.code), os.strerror(int(e.code))) from e
            link = _get_link(ipr, name)
            if link is None:
                raise BridgeMissingError(f"bridge {name} vanished while it was being created")
        if link.kind != "bridge":
            raise BridgeConflictError(f"link {name} exists but is a {link.kind or 'plain device'}, not a bridge")
        if link.mac != mac:
            # A bridge without a fixed MAC takes the lowest of its ports' and changes it as they come and go,
            # which leaves stale neighbour entries in the containers.
            with _netlink(f"set MAC of {name}"):
                ipr.link("set", index=link.index, address=mac)
        disable_ipv6(name)
        if interface not in _ipv4_addresses(ipr, link.index):
            _add_address(ipr, link, interface)
        if not link.up:
            with _netlink(f"bring {name} up"):
                ipr.link("set", index=link.index, state="up")
        state = _bridge_state(ipr, name)
        if state is None:
            raise BridgeMissingError(f"bridge {name} vanished while it was being set up")
        return state, created


def bridge_state(name: str) -> BridgeState | None:
    """The bridge with its IPv4 addresses and ports, or None if there is no link of that name."""
    with IPRoute() as ipr:
        return _bridge_state(ipr, name)


def _bridge_state(ipr: Any, name: str) -> BridgeState | None:
    link = _get_link(ipr, name)
    if link is None:
        return None
    return BridgeState(link=link, addresses=_ipv4_addresses(ipr, link.index), ports=_ports(ipr, link.index))


def delete_bridge(name: str) -> list[str]:
    """Delete the bridge and the veth ports on it (which removes their container ends); returns what went."""
    removed: list[str] = []
    with IPRoute() as ipr:
        link = _get_link(ipr, name)
        if link is None:
            return removed
        if link.kind != "bridge":
            raise BridgeConflictError(f"link {name} is a {link.kind or 'plain device'}, not a bridge: not deleting it")
        for port in _ports(ipr, link.index):
            if port.kind == "veth" and _delete_link(ipr, port):
                removed.append(port.name)
        if _delete_link(ipr, link):
            removed.append(name)
    return removed


def _delete_link(ipr: Any, link: Link) -> bool:
    try:
        ipr.link("del", index=link.index)
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return False
        raise NetlinkOperationError(f"delete link {link.name}", int(e.code), os.strerror(int(e.code))) from e
    return True


# -- veth ----------------------------------------------------------------------------------------------


def attach(spec: VethSpec) -> VethState:
    """Connect the namespace to the bridge; idempotent, and undoes a veth it created if a later step fails."""
    with IPRoute() as ipr:
        bridge = _get_link(ipr, spec.bridge)
        if bridge is None or bridge.kind != "bridge":
            raise BridgeMissingError(f"bridge {spec.bridge} does not exist: ensure the bridge first (netconf up)")
        host = _get_link(ipr, spec.host_name)
        created = host is None
        if host is None:
            host = _create_veth(ipr, spec, bridge)
        try:
            container_index = run_in_netns(spec.netns_fd, lambda: _configure_container(spec, host.index))
            if host.peer_index != container_index:
                raise AddressInUseError(
                    f"{spec.interface.ip} is attached to another network namespace (host end {spec.host_name})"
                )
            _configure_host_end(ipr, spec, bridge, host)
        except BaseException:
            if created:
                _delete_link(ipr, host)
            raise
    return VethState(host_index=host.index, container_index=container_index, created=created)


def _create_veth(ipr: Any, spec: VethSpec, bridge: Link) -> Link:
    """Make the pair with the container end created directly inside the namespace under its final name."""
    peer = {"ifname": spec.ifname, "address": spec.mac, "net_ns_fd": spec.netns_fd}
    try:
        ipr.link("add", ifname=spec.host_name, kind="veth", master=bridge.index, peer=peer)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise NetlinkOperationError(f"create veth {spec.host_name}", int(e.code), os.strerror(int(e.code))) from e
        host = _get_link(ipr, spec.host_name)
        if host is None:  # the host name was free, so the namespace already has an interface of that name
            raise NetnsBusyError(
                f"the network namespace already has an interface {spec.ifname} that netconf did not create"
            ) from e
        return host  # a concurrent attach of the same address won the race
    host = _get_link(ipr, spec.host_name)
    if host is None:
        raise NetlinkOperationError(f"create veth {spec.host_name}", errno.ENODEV, "vanished after creation")
    return host


def _configure_container(spec: VethSpec, host_index: int) -> int:
    """Inside the namespace: IPv6 off, lo up, address, eth0 up, default route, permanent gateway neighbour."""
    for scope in ("all", "default"):
        write_sysctl(f"net/ipv6/conf/{scope}/disable_ipv6", "1", missing_ok=True)
    with IPRoute() as ipr:
        lo = _get_link(ipr, "lo")
        if lo is not None and not lo.up:
            with _netlink("bring lo up"):
                ipr.link("set", index=lo.index, state="up")
        eth = _get_link(ipr, spec.ifname)
        if eth is None or eth.peer_index != host_index or eth.mac != spec.mac:
            raise AddressInUseError(
                f"{spec.interface.ip} is attached to another network namespace (host end {spec.host_name})"
            )
        if spec.interface not in _ipv4_addresses(ipr, eth.index):
            _add_address(ipr, eth, spec.interface)
        if not eth.up:
            with _netlink(f"bring {spec.ifname} up"):
                ipr.link("set", index=eth.index, state="up")
        with _netlink(f"set the default route via {spec.gateway}"):
            ipr.route("replace", dst="0.0.0.0/0", gateway=str(spec.gateway), oif=eth.index)
        with _netlink(f"add the neighbour entry for {spec.gateway}"):
            ipr.neigh("replace", dst=str(spec.gateway), lladdr=spec.gateway_mac, ifindex=eth.index, state="permanent")
        return eth.index


def _configure_host_end(ipr: Any, spec: VethSpec, bridge: Link, host: Link) -> None:
    """On the host: IPv6 off on the port, port on the bridge and up, permanent neighbour for the container."""
    disable_ipv6(spec.host_name)
    if host.master != bridge.index:
        with _netlink(f"put {spec.host_name} on {spec.bridge}"):
            ipr.link("set", index=host.index, master=bridge.index)
    # Set every time, so that turning the setting off (or on) applies to replicas attached again at a restart.
    with _netlink(f"set isolation of {spec.host_name}"):
        ipr.brport("set", index=host.index, isolated=int(spec.isolated))
    if not host.up:
        with _netlink(f"bring {spec.host_name} up"):
            ipr.link("set", index=host.index, state="up")
    with _netlink(f"add the neighbour entry for {spec.interface.ip}"):
        ipr.neigh("replace", dst=str(spec.interface.ip), lladdr=spec.mac, ifindex=bridge.index, state="permanent")


def detach(bridge: str, host_name: str, ip: IPv4Address) -> bool:
    """Delete the host end (the container end goes with it) and the neighbour entry; True if a link was removed."""
    with IPRoute() as ipr:
        bridge_link = _get_link(ipr, bridge)
        if bridge_link is not None:
            try:
                ipr.neigh("del", dst=str(ip), ifindex=bridge_link.index)
            except NetlinkError as e:
                if e.code not in (errno.ENOENT, errno.ESRCH, errno.ENODEV):
                    raise NetlinkOperationError(
                        f"delete the neighbour entry for {ip}", int(e.code), os.strerror(int(e.code))
                    ) from e
        host = _get_link(ipr, host_name)
        return host is not None and _delete_link(ipr, host)
