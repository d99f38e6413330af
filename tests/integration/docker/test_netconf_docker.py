"""netconf with a real container: started with NetworkMode none, attached by its PID, reached over HTTP."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest

from netconf import NetConfig, Network
from tests.docker_support import TEST_LABEL, unique_name
from tests.net_support import free_test_subnet

pytestmark = pytest.mark.docker

IMAGE = "pyfaasd/runtime-python:latest"


@pytest.fixture
async def image(docker: aiodocker.Docker) -> str:
    if os.geteuid() != 0:
        pytest.skip("attaching a container's network namespace needs root")
    try:
        await docker.images.inspect(IMAGE)
    except aiodocker.DockerError as e:
        if e.status == 404:
            pytest.skip(f"image {IMAGE} is missing: run scripts/build-images")
        raise
    return IMAGE


async def http_get_until_up(url: str, timeout: float = 15.0) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    return response.status, await response.text()
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)  # the server inside may still be starting


async def test_container_with_network_none_attached_by_pid_serves_http(
    docker: aiodocker.Docker, image: str, tmp_path: Path
) -> None:
    network = Network(NetConfig(bridge=f"pft{secrets.token_hex(4)}", subnet=free_test_subnet(), state_dir=tmp_path))
    name = unique_name("pft-netconf")
    config: dict[str, Any] = {
        "Image": image,
        "Entrypoint": ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],
        "Cmd": [],
        "WorkingDir": "/tmp",
        "Labels": {TEST_LABEL: "1"},
        "HostConfig": {"NetworkMode": "none"},
    }
    container = None
    try:
        await network.ensure_bridge()
        container = await docker.containers.run(config, name=name)
        info = await container.show()
        pid = info["State"]["Pid"]
        assert pid > 0

        attachment = await network.connect(pid, name)
        assert attachment.netns == f"/proc/{pid}/ns/net"

        status, body = await http_get_until_up(f"http://{attachment.ip}:8080/")
        assert status == 200
        assert "Directory listing" in body

        again = await network.connect(pid, name)  # e.g. a provider restart re-attaching: a no-op
        assert not again.created
        assert again.ip == attachment.ip

        await network.detach(attachment.ip)  # the container is unreachable afterwards (no route, no neighbour)
        with pytest.raises((aiohttp.ClientError, TimeoutError)):
            async with aiohttp.ClientSession() as session:
                await session.get(f"http://{attachment.ip}:8080/", timeout=aiohttp.ClientTimeout(total=1))
    finally:
        if container is not None:
            await container.delete(force=True)
        await network.down()
