"""The provider's orchestration over in-memory fakes (tests/unit/provider/fakes.py): no Docker, no root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.provider.fakes import World


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """A started provider with no functions."""
    made = World(tmp_path)
    await made.start()
    try:
        yield made
    finally:
        await made.core.close()
