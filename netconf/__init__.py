"""netconf: the IPv4-only bridge network of pyfaasd (bridge, IPAM, veth attach, iptables rules, hosts file).

The provider uses :class:`Network` (async; netlink runs in worker threads, so it works under any loop) and the
hosts-file functions. See docs/netconf.md.

Importing the package does not import pyroute2 (about 0.25 s): the network classes load on first use, so a
process that only reads the hosts file (``netconf.hosts``) stays light.
"""

from typing import TYPE_CHECKING, Any

from netconf.config import HostPort, NetConfig, mac_for
from netconf.errors import (
    AddressInUseError,
    AddressInvalidError,
    BridgeConflictError,
    BridgeMissingError,
    ConfigError,
    HostsFileError,
    IpamStateError,
    IptablesError,
    NetconfError,
    NetlinkOperationError,
    NetnsBusyError,
    NetnsNotFoundError,
    NftablesError,
    OwnerInvalidError,
    SubnetChangedError,
    SubnetFullError,
)
from netconf.hosts import (
    DEFAULT_NAMESPACE,
    HostsTable,
    Replica,
    parse_hosts,
    read_hosts,
    render_hosts,
    write_hosts,
)
from netconf.ipam import Allocation, Ipam

if TYPE_CHECKING:
    from netconf.network import Attachment, BridgeInfo, NetStatus, Network, host_ifname

_LAZY = frozenset({"Attachment", "BridgeInfo", "Network", "NetStatus", "host_ifname"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from netconf import network

        return getattr(network, name)
    raise AttributeError(f"module 'netconf' has no attribute {name!r}")


__all__ = [
    "DEFAULT_NAMESPACE",
    "AddressInUseError",
    "AddressInvalidError",
    "Allocation",
    "Attachment",
    "BridgeConflictError",
    "BridgeInfo",
    "BridgeMissingError",
    "ConfigError",
    "HostPort",
    "HostsFileError",
    "HostsTable",
    "Ipam",
    "IpamStateError",
    "IptablesError",
    "NetConfig",
    "NetStatus",
    "NetconfError",
    "NetlinkOperationError",
    "NetnsBusyError",
    "NetnsNotFoundError",
    "Network",
    "NftablesError",
    "OwnerInvalidError",
    "Replica",
    "SubnetChangedError",
    "SubnetFullError",
    "host_ifname",
    "mac_for",
    "parse_hosts",
    "read_hosts",
    "render_hosts",
    "write_hosts",
]
