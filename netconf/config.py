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
from servicekit.settings import STATE_DIR, Setting, parse_text

ENV_BRIDGE = "PYFAASD_BRIDGE"
ENV_SUBNET = "PYFAASD_SUBNET"

DEFAULT_BRIDGE = "pyfaasd0"
DEFAULT_SUBNET = IPv4Network("10.62.0.0/16")

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
class NetConfig:
    """Where and how the function network lives. Validated on construction."""

    bridge: str = DEFAULT_BRIDGE
    subnet: IPv4Network = DEFAULT_SUBNET
    state_dir: Path = field(default=defaults.STATE_DIR)

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
        """Read ``PYFAASD_BRIDGE``, ``PYFAASD_SUBNET`` and ``PYFAASD_STATE_DIR``; unset or empty means default."""
        return cls(bridge=BRIDGE.read(env), subnet=SUBNET.read(env), state_dir=STATE_DIR.read(env))

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
SETTINGS: Final[tuple[Setting[Any], ...]] = (BRIDGE, SUBNET, STATE_DIR)
