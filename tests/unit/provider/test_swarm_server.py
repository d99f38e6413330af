"""The swarm provider's start check: it must be able to reach the overlay's addresses directly."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from provider.errors import NotOnOverlayError
from provider.swarm_server import check_attached, source_address


def test_a_subnet_this_namespace_has_an_address_in_passes() -> None:
    assert source_address(IPv4Address("127.0.0.2")) == IPv4Address("127.0.0.1")
    check_attached("lo", (IPv4Network("127.0.0.0/8"),))


def test_a_subnet_reached_only_by_another_route_is_refused_naming_the_network() -> None:
    # TEST-NET-2: never a local subnet; its route, if any, leaves from an address outside it
    with pytest.raises(NotOnOverlayError, match="not attached to the overlay network fnnet"):
        check_attached("fnnet", (IPv4Network("198.51.100.0/24"),))
    with pytest.raises(NotOnOverlayError, match="no IPv4 subnet"):
        check_attached("fnnet", ())
