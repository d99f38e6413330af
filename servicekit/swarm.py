"""What the provider and the gateway agree on about the Swarm backend (docs/swarm.md): the backend names and how
a function's service is named, so the gateway can ask Swarm's DNS for ``tasks.<service>`` without importing the
provider."""

from __future__ import annotations

import enum
from typing import Final

DNS_SERVER: Final = "127.0.0.11"  # Docker's embedded DNS, in the network namespace of anything on the overlay


class Backend(enum.StrEnum):
    DOCKER = "docker"  # containers on this host's bridge
    SWARM = "swarm"  # Swarm services on an attachable overlay (docs/swarm.md)


def service_name(namespace: str, name: str) -> str:
    """``<namespace>_<name>``, the way ``docker stack`` names services; ``_`` is in no DNS label, so this is
    unambiguous."""
    return f"{namespace}_{name}"


def tasks_name(namespace: str, name: str) -> str:
    """The DNS name Swarm answers with the addresses of a service's healthy tasks (``endpoint_mode: dnsrr``)."""
    return f"tasks.{service_name(namespace, name)}"
