"""`pyfaasd volume create|ls|rm` against the real provider app over the fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpServer

from pyfaasd.gateway_client import Target
from pyfaasd.volume_commands import volume_create, volume_ls, volume_rm
from servicekit.auth import Credentials
from tests.unit.provider.fakes import World


@pytest.fixture
async def target(tmp_path: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[tuple[World, Target]]:
    world = World(tmp_path / "state", volume_host_roots=(tmp_path,))
    await world.start()
    server = await aiohttp_server(world.app(Credentials("admin", "pw")))
    yield world, Target(str(server.make_url("")).rstrip("/"), Credentials("admin", "pw"))
    await world.core.close()


async def test_create_list_and_remove(target: tuple[World, Target], tmp_path: Path) -> None:
    world, gateway = target
    out: list[str] = []
    err: list[str] = []

    def create(name: str, **kwargs: str | None) -> int:
        options: dict[str, str | None] = {"host_path": None, "nfs_server": None, "nfs_path": None}
        options.update(kwargs)
        return volume_create(gateway, name, nfs_options="", out=out.append, err=err.append, **options)

    assert await asyncio.to_thread(create, "data") == 0
    assert out[-1] == "Created volume data (local). Mount it with the annotation com.pyfaasd.volume.data=/path"
    assert await asyncio.to_thread(create, "media", host_path=str(tmp_path)) == 0
    assert await asyncio.to_thread(create, "nas", nfs_server="127.0.0.1", nfs_path="/export") == 0
    assert await asyncio.to_thread(create, "half", nfs_server="127.0.0.1") == 2
    assert await asyncio.to_thread(create, "data") == 1
    assert "409" in err[-1]

    out.clear()
    assert await asyncio.to_thread(volume_ls, gateway, out.append, err.append) == 0
    assert [line.split() for line in out] == [
        ["NAME", "TYPE", "SOURCE", "FUNCTIONS"],
        ["data", "local", "-", "-"],
        ["media", "host", str(tmp_path), "-"],
        ["nas", "nfs", "127.0.0.1:/export", "-"],
    ]
    assert await asyncio.to_thread(volume_rm, gateway, ["data", "ghost"], out.append, err.append) == 1
    assert out[-1] == "Removed volume data."
    assert "404" in err[-1]
    assert "pyfaasd-pft0-data" not in world.runtime.volume_store
