"""One error type per failure; the HTTP edge (provider/middleware.py) maps each to its status.

Adapters raise these with ``raise ... from e``; handlers never build error responses themselves.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from netconf.errors import NetconfError, SubnetFullError


class ProviderError(Exception):
    """Base of every failure the provider reports; ``status`` is the HTTP status it maps to."""

    status = 500


class RequestTooLargeError(ProviderError):
    """A request body over the provider's limit."""

    status = 413


class InvalidRequestError(ProviderError):
    """Malformed JSON, a missing or invalid field: the message names the field."""

    status = 400


class FunctionNotFoundError(ProviderError):
    status = 404


class FunctionExistsError(ProviderError):
    status = 409


class RouteConflictError(ProviderError):
    """A domain or path route another function holds: the message names that function."""

    status = 409


class NamespaceNotFoundError(ProviderError):
    """An unknown namespace named in a request that acts on it directly (get, update, delete)."""

    status = 404


class NamespaceInvalidError(ProviderError):
    """A function request names a namespace that does not exist: a bad request, not a missing resource."""

    status = 400


class NamespaceExistsError(ProviderError):
    status = 409


class NamespaceInUseError(ProviderError):
    status = 409


class SecretNotFoundError(ProviderError):
    status = 404


class SecretInUseError(ProviderError):
    """A secret that functions mount cannot be removed: the message names them."""

    status = 409


class SecretExistsError(ProviderError):
    status = 409


class SecretMissingError(ProviderError):
    """A function names a secret that does not exist: refused before anything is created."""

    status = 400


class ImageUnavailableError(ProviderError):
    """The image is not present locally and could not be pulled (or the pull policy forbids pulling)."""

    status = 400


class FunctionStartError(ProviderError):
    """A replica did not become ready: its container exited, or its watchdog never answered healthy."""

    status = 422


class LogRequestError(ProviderError):
    """Bad ``tail``/``since``/``follow`` parameters of a log request (faas-provider answers 422)."""

    status = 422


class NoAddressError(ProviderError):
    """The function subnet has no free address for another replica: nothing was started."""

    status = 409


class DockerUnavailableError(ProviderError):
    """The Docker Engine cannot be reached or failed in a way the user cannot fix."""

    status = 503


class RuntimeFailureError(ProviderError):
    """Docker or the network refused an operation for a reason that is ours, not the user's."""

    status = 500


class NetworkFailureError(ProviderError):
    """The function network (netlink, the bridge, the address store) refused an operation: ours, not the user's."""

    status = 500


def network_error(e: NetconfError, subnet: IPv4Network) -> ProviderError:
    """netconf's error as the provider's: a full subnet is the user's to fix (409), the rest is ours (500)."""
    if isinstance(e, SubnetFullError):
        return NoAddressError(
            f"no free address left in the function subnet {subnet} for another replica: scale functions down "
            "or delete some, or give the bridge a larger subnet (PYFAASD_SUBNET)"
        )
    return NetworkFailureError(f"the function network failed: {e}")


class CodeBundleInvalidError(ProviderError):
    """An upload that is not a bundle we can store, or an entry in it that is unsafe: the message names it."""

    status = 400


class CodeBundleTooLargeError(ProviderError):
    """A bundle over one of the size, file-count or unpacked-size limits."""

    status = 413


class CodeNotFoundError(ProviderError):
    status = 404


class CodeInUseError(ProviderError):
    """A bundle that functions still use cannot be removed: the message names them."""

    status = 409


class DependencyInstallError(ProviderError):
    """pip could not install a code function's requirements.txt: the message ends with pip's last lines."""

    status = 422


class CodeMissingError(ProviderError):
    """A function names a code bundle that is not stored: refused before anything is created."""

    status = 400


class CodeTooLargeForSwarmError(ProviderError):
    """A code bundle the swarm backend cannot carry to its tasks as Swarm configs (a file over Swarm's 500 KB,
    too many files, too much in all): refused before anything is made; the message names the limit."""

    status = 400


class CodeNotCarriedError(ProviderError):
    """What a code function asks that the swarm backend cannot give tasks on other nodes (a requirements.txt to
    install, a ``pyfaasd dev`` directory of this host): refused before anything is made."""

    status = 400


class DevDirectoryError(ProviderError):
    """A ``pyfaasd dev`` directory that is missing, shared, or whose token does not prove local access."""

    status = 403


class VolumeNotFoundError(ProviderError):
    status = 404


class VolumeExistsError(ProviderError):
    status = 409


class VolumeInUseError(ProviderError):
    """A volume that functions mount cannot be removed: the message names them."""

    status = 409


class VolumeMissingError(ProviderError):
    """A function mounts a volume that does not exist: refused before anything is created."""

    status = 400


class VolumeMountError(ProviderError):
    """Docker could not mount a volume (an NFS share that does not answer, say): the message names it."""

    status = 422


class StateDirBusyError(ProviderError):
    """Another provider holds the state dir: this one stops before touching anything."""

    status = 409


class NotOnOverlayError(ProviderError):
    """The swarm backend's provider runs where it cannot reach the functions' overlay (docs/swarm.md)."""

    status = 503
