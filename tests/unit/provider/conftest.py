"""The provider's orchestration over in-memory fakes (tests/unit/provider/fakes.py): no Docker, no root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from tests.unit.provider.fakes import CREDENTIALS, Client, World


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """A started provider with no functions."""
    made = World(tmp_path)
    await made.start()
    try:
        yield made
    finally:
        await made.core.close()


@pytest.fixture
async def stack(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[tuple[World, Client]]:
    """A started provider with no functions, and a client of its HTTP API (send ``fakes.AUTH``)."""
    made = World(tmp_path / "state")
    await made.start()
    try:
        yield made, await aiohttp_client(made.app(CREDENTIALS))
    finally:
        await made.core.close()
