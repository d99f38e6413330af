"""The errors netconf raises: one class per failure, all under :class:`NetconfError`."""

from __future__ import annotations

from servicekit.settings import SettingError


class NetconfError(Exception):
    """Base of every error netconf raises on purpose."""


class ConfigError(NetconfError, SettingError):
    """A setting has a bad value; the message names the setting (a SettingError, as every daemon's are)."""


class SubnetFullError(NetconfError):
    """Every usable address of the subnet is allocated."""


class SubnetChangedError(NetconfError):
    """The allocation store was written for another subnet than the configured one."""


class OwnerInvalidError(NetconfError, ValueError):
    """An allocation owner is not a non-empty string."""


class IpamStateError(NetconfError):
    """The allocation store on disk cannot be read or written."""


class AddressInvalidError(NetconfError, ValueError):
    """An address is outside the subnet, or is its network, bridge or broadcast address."""


class AddressInUseError(NetconfError):
    """The address is already attached to another network namespace."""


class BridgeMissingError(NetconfError):
    """The bridge does not exist (run ``ensure_bridge`` / ``python -m netconf up`` first)."""


class BridgeConflictError(NetconfError):
    """A link with the bridge's name exists but is not a bridge."""


class NetnsNotFoundError(NetconfError):
    """The network namespace (a PID or a path) does not exist."""


class NetnsBusyError(NetconfError):
    """The network namespace already has an interface called ``eth0`` that netconf did not make."""


class NetlinkOperationError(NetconfError):
    """A netlink request failed; ``code`` is the kernel's errno."""

    def __init__(self, operation: str, code: int, detail: str) -> None:
        super().__init__(f"{operation} failed: [errno {code}] {detail}")
        self.operation = operation
        self.code = code


class IptablesError(NetconfError):
    """An ``iptables`` command failed or could not be run."""


class NftablesError(NetconfError):
    """An ``nft`` command (the isolation table) failed or could not be run."""


class HostsFileError(NetconfError):
    """The hosts file cannot be written, or an entry would break its format."""
