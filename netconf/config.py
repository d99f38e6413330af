"""Settings of the bridge network: bridge name, subnet and state dir (ARCHITECTURE.md, "Names and paths")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Final, Self

from netconf.errors import ConfigError
from servicekit import defaults
from servicekit.settings import STATE_DIR, Setting, parse_bool, parse_listen_address, parse_text

ENV_BRIDGE = "PYFAASD_BRIDGE"
ENV_SUBNET = "PYFAASD_SUBNET"

DEFAULT_BRIDGE = "pyfaasd0"
DEFAULT_SUBNET = IPv4Network("10.62.0.0/16")
DEFAULT_GATEWAY_PORT: Final = int(defaults.GATEWAY_ADDR.rpartition(":")[2])

# Linux allows 15 bytes for an interface name (IFNAMSIZ - 1). We also keep to characters that are safe in an
# iptables chain name, because the chains are named after the bridge.
_BRIDGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")

# The smallest subnet with room for the bridge and one container: network, bridge, container, broadcast.
MAX_PREFIXLEN = 30

# The locally administered unicast prefix of every MAC address netconf assigns; the other four bytes are the
# IPv4 address, so a MAC never changes for a given IP (ovn-kubernetes uses the same scheme).
MAC_PREFIX = b"\x0a\x58"


def mac_for(ip: IPv4Address) -> str:
    """The fixed MAC address of ``ip`` on the bridge network (bridge and containers alike)."""
    return ":".join(f"{b:02x}" for b in MAC_PREFIX + ip.packed)


@dataclass(frozen=True, slots=True)
class HostPort:
    """A port on the host that functions may reach through the bridge, e.g. ``5432`` or ``53/udp``."""

    port: int
    protocol: str = "tcp"  # or "udp"

    def __str__(self) -> str:
        return str(self.port) if self.protocol == "tcp" else f"{self.port}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class NetConfig:
    """Where and how the function network lives. Validated on construction."""

    bridge: str = DEFAULT_BRIDGE
    subnet: IPv4Network = DEFAULT_SUBNET
    state_dir: Path = field(default=defaults.STATE_DIR)
    # What functions reach on the host: the gateway's port, and these (netconf/isolation.py); nothing else.
    gateway_port: int = DEFAULT_GATEWAY_PORT
    host_ports: tuple[HostPort, ...] = ()
    # Functions reach each other only through the gateway (bridge port isolation), not directly by name.
    isolate_functions: bool = False

    def __post_init__(self) -> None:
        if not _BRIDGE_NAME.match(self.bridge):
            raise ConfigError(
                f"{ENV_BRIDGE}: {self.bridge!r} is not a valid bridge name "
                "(1-15 characters: letters, digits, '_', '.', '-'; not starting with a punctuation mark)"
            )
        if not isinstance(self.subnet, IPv4Network):
            raise ConfigError(f"{ENV_SUBNET}: {self.subnet!r} is not an IPv4 network")
        if self.subnet.prefixlen > MAX_PREFIXLEN:
            raise ConfigError(
                f"{ENV_SUBNET}: {self.subnet} is too small (the prefix must be /{MAX_PREFIXLEN} or shorter)"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Read the network's settings (``SETTINGS``) and the gateway's port from ``PYFAASD_GATEWAY_ADDR`` (the
        port functions reach it on); unset or empty means default."""
        return cls(
            bridge=BRIDGE.read(env),
            subnet=SUBNET.read(env),
            state_dir=STATE_DIR.read(env),
            gateway_port=GATEWAY_ADDR.read(env)[1],
            host_ports=FUNCTION_HOST_PORTS.read(env),
            isolate_functions=ISOLATE_FUNCTIONS.read(env),
        )

    @property
    def bridge_ip(self) -> IPv4Address:
        """The bridge's address: the first host address of the subnet (10.62.0.1 by default)."""
        return self.subnet.network_address + 1

    @property
    def bridge_interface(self) -> IPv4Interface:
        return IPv4Interface((self.bridge_ip, self.subnet.prefixlen))

    @property
    def bridge_mac(self) -> str:
        return mac_for(self.bridge_ip)

    @property
    def hosts_path(self) -> Path:
        return self.state_dir / "hosts"

    @property
    def ipam_path(self) -> Path:
        """The allocation store; one per bridge, so a second instance (tests) keeps its own."""
        return self.state_dir / "ipam" / f"{self.bridge}.json"


def parse_subnet(name: str, value: str) -> IPv4Network:
    """Parse an IPv4 subnet such as ``10.62.0.0/16``; host bits must be zero."""
    try:
        return IPv4Network(value.strip(), strict=True)
    except ValueError as e:
        raise ConfigError(f"{name}: {value!r} is not an IPv4 subnet like 10.62.0.0/16 ({e})") from e


# The network's settings, as rows of the daemons' settings tables (servicekit.settings); the bridge name is
# checked by NetConfig itself.
BRIDGE: Final = Setting(
    ENV_BRIDGE, "--bridge", DEFAULT_BRIDGE, "bridge name; also labels this instance's containers", parse_text
)
SUBNET: Final = Setting(
    ENV_SUBNET, "--subnet", str(DEFAULT_SUBNET), "function subnet; the bridge IP is its first address", parse_subnet
)


def parse_host_ports(name: str, value: str) -> tuple[HostPort, ...]:
    """``5432,53/udp``: ports (1-65535), each optionally ``/tcp`` or ``/udp``; empty means none."""
    ports: list[HostPort] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        number, _, protocol = item.partition("/")
        protocol = protocol.strip().lower() or "tcp"
        if protocol not in ("tcp", "udp") or not number.strip().isdigit() or not 0 < int(number) < 65536:
            raise ConfigError(f"{name}: {item!r} is not a port like 5432 or 53/udp")
        ports.append(HostPort(int(number), protocol))
    return tuple(dict.fromkeys(ports))


FUNCTION_HOST_PORTS: Final = Setting(
    "PYFAASD_FUNCTION_HOST_PORTS",
    "--function-host-ports",
    "",
    "host ports functions may reach besides the gateway's, e.g. 5432,53/udp (all others are refused)",
    parse_host_ports,
)
ISOLATE_FUNCTIONS: Final = Setting(
    "PYFAASD_ISOLATE_FUNCTIONS",
    "--isolate-functions",
    "false",
    "functions reach each other only through the gateway, not directly by name",
    parse_bool,
)
# Read (not owned) by the network: functions may reach the gateway on its port. The gateway's table has the row.
GATEWAY_ADDR: Final = Setting(
    "PYFAASD_GATEWAY_ADDR", None, defaults.GATEWAY_ADDR, "the gateway's listen address", parse_listen_address
)
SETTINGS: Final[tuple[Setting[Any], ...]] = (BRIDGE, SUBNET, STATE_DIR, FUNCTION_HOST_PORTS, ISOLATE_FUNCTIONS)
