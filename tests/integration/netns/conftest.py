"""Fixtures for netconf's netns tests: a throwaway bridge, subnet, state dir and network namespaces.

Everything is named with a random ``pft`` prefix, lives in a subnet of 10.201.0.0/16 that no route on the host
uses, and is removed in ``finally`` even when a test fails. The host's own interfaces and rules are not touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from netconf import NetConfig, Network
from tests.integration.netns.netns_helpers import (
    GATEWAY_PORT,
    MakeNetwork,
    Server,
    StartServer,
    force_cleanup,
    free_test_subnet,
    listen,
)


@pytest.fixture(autouse=True)
def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("netns tests need root (network namespaces, links, iptables)")
    for tool in ("ip", "iptables", "iptables-save"):
        if shutil.which(tool) is None:
            pytest.skip(f"netns tests need {tool}")


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., NetConfig]:
    """Factory of configs with a random bridge name (pft + 8 hex), a free test subnet and a temp state dir."""

    def make(prefixlen: int = 24, **fields: Any) -> NetConfig:
        return NetConfig(
            bridge=f"pft{secrets.token_hex(4)}",
            subnet=free_test_subnet(prefixlen),
            state_dir=tmp_path / secrets.token_hex(4),
            **{"gateway_port": GATEWAY_PORT, **fields},
        )

    return make


@pytest.fixture
async def make_network(make_config: Callable[..., NetConfig]) -> AsyncIterator[MakeNetwork]:
    """Factory: ``await make_network(prefixlen=24)`` gives a Network with its bridge up; every one is downed after."""
    made: list[Network] = []

    async def make(prefixlen: int = 24, **fields: Any) -> Network:
        network = Network(make_config(prefixlen, **fields))
        made.append(network)
        await network.ensure_bridge()
        return network

    try:
        yield make
    finally:
        for network in made:
            try:
                await network.down()
            finally:
                force_cleanup(network.config.bridge)


@pytest.fixture
async def network(make_network: MakeNetwork) -> Network:
    return await make_network()


@pytest.fixture
def netns() -> Iterator[Callable[[], str]]:
    """Factory of named network namespaces (``ip netns add pft-<hex>``), deleted after the test."""
    names: list[str] = []

    def make() -> str:
        name = f"pft-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        names.append(name)
        return name

    try:
        yield make
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def serve() -> Iterator[StartServer]:
    """Factory: ``serve(netns_or_None, ip, port, tag)`` answers on ip:port inside the namespace (None: the host)."""
    started: list[Server] = []

    def start(ns: str | None, ip: IPv4Address, port: int, tag: str) -> Server:
        server = Server(listen(ns, ip, port), tag)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.close()
