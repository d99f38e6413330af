"""`pyfaasd image pull|refresh` against the real provider app over the fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpServer

from pyfaasd.gateway_client import Target
from pyfaasd.image_commands import _bar, image_pull, image_refresh
from servicekit.auth import Credentials
from tests.unit.provider.fakes import World


@pytest.fixture
async def target(tmp_path: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[tuple[World, Target]]:
    world = World(tmp_path / "state")
    await world.start()
    server = await aiohttp_server(world.app(Credentials("admin", "pw")))
    yield world, Target(str(server.make_url("")).rstrip("/"), Credentials("admin", "pw"))
    await world.core.close()


async def test_pull_shows_progress_and_the_result(target: tuple[World, Target]) -> None:
    world, gateway = target
    world.runtime.pullable = {"team/app:1"}
    out: list[str] = []
    err: list[str] = []
    assert await asyncio.to_thread(image_pull, gateway, "team/app:1", out.append, err.append, tty=False) == 0
    assert out == ["layer1: Downloading 5/10", "Pulled team/app:1 (no digest) from docker.io."]
    assert await asyncio.to_thread(image_pull, gateway, "nowhere/app:1", out.append, err.append, tty=False) == 1
    assert "could not be pulled; tried docker.io" in err[-1]


def test_the_progress_bar_sums_every_layer() -> None:
    assert _bar({"a": (5, 10), "b": (10, 10)}, "Downloading") == f"\r[{'#' * 22}{'.' * 8}]  75% {'Downloading':<40}"


async def test_refresh_reports_rolled_and_unchanged(target: tuple[World, Target]) -> None:
    world, gateway = target
    world.runtime.pullable = {"fn:1"}
    world.runtime.pullable_ids = {"fn:1": "sha256:fn1-a"}
    await world.deploy("one")
    out: list[str] = []
    err: list[str] = []
    assert await asyncio.to_thread(image_refresh, gateway, [], out.append, err.append) == 0
    assert out == ["Unchanged one.openfaas-fn."]
    world.runtime.pullable_ids["fn:1"] = "sha256:fn1-b"
    assert await asyncio.to_thread(image_refresh, gateway, ["one"], out.append, err.append) == 0
    assert out[-1] == "Rolled one.openfaas-fn: its image changed."
