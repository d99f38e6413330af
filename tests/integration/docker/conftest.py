"""Docker fixtures: a real engine and the locally built images, containers cleaned up in finally."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiodocker
import pytest

from tests.docker_support import TEST_LABEL
from tests.helpers import docker_available


@pytest.fixture(scope="session")
def docker_ready() -> None:
    if not docker_available():
        pytest.skip("needs a running Docker Engine (scripts/setup starts one)")


@pytest.fixture
async def docker(docker_ready: None) -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker()
    try:
        yield client
    finally:
        for container in await client.containers.list(all=True, filters={"label": [TEST_LABEL]}):
            try:
                await container.delete(force=True)
            except aiodocker.DockerError as exc:
                if exc.status != 404:
                    raise
        await client.close()
