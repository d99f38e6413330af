"""Volumes over the provider's HTTP edge and the fakes: create, mount by annotation, auto, refusals."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from servicekit.auth import Credentials
from tests.unit.provider.fakes import AUTH, Behaviour, Client, World, until

MakeStack = Callable[..., Awaitable[tuple[World, Client]]]


@pytest.fixture
async def make_stack(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[MakeStack]:
    worlds: list[World] = []

    async def make(roots: tuple[Path, ...] = ()) -> tuple[World, Client]:
        world = World(tmp_path / f"state{len(worlds)}", volume_host_roots=roots)
        worlds.append(world)
        await world.start()
        return world, await aiohttp_client(world.app(Credentials("admin", "secret")))

    yield make
    for world in worlds:
        await world.core.close()


async def create(client: Client, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    reply = await client.post("/system/volumes", json=body, headers=AUTH)
    assert reply.status == status, await reply.text()
    return await reply.json() if status == 201 else {"text": await reply.text()}


async def deploy(client: Client, name: str, annotations: dict[str, str], **fields: Any) -> Any:
    spec = {"service": name, "image": "fn:1", "annotations": annotations, **fields}
    return await client.post("/system/functions", json=spec, headers=AUTH)


async def listed(client: Client) -> dict[str, dict[str, Any]]:
    reply = await client.get("/system/volumes", headers=AUTH)
    return {v["name"]: v for v in await reply.json()}


async def test_a_named_volume_is_shared_by_two_functions_and_their_replicas(make_stack: MakeStack) -> None:
    world, client = await make_stack()
    made = await create(client, {"name": "data"})
    assert (made["name"], made["type"], made["functions"]) == ("data", "local", [])
    mountpoint = Path(world.runtime.volume_store["pyfaasd-pft0-data"].mountpoint)
    assert stat.S_IMODE(mountpoint.stat().st_mode) == 0o777  # the function's non-root user can write
    labels = {"com.openfaas.scale.min": "2"}
    assert (await deploy(client, "a", {"com.pyfaasd.volume.data": "/mnt/data"}, labels=labels)).status == 202
    assert (await deploy(client, "b", {"com.pyfaasd.volume.data": "/srv/in:ro"})).status == 202
    binds = [c.binds for c in world.runtime.of("a") + world.runtime.of("b")]
    assert sum("pyfaasd-pft0-data:/mnt/data:rw" in b for b in binds) == 2
    assert sum("pyfaasd-pft0-data:/srv/in:ro" in b for b in binds) == 1
    assert (await listed(client))["data"]["functions"] == ["a.openfaas-fn", "b.openfaas-fn"]
    refused = await client.delete("/system/volumes", json={"name": "data"}, headers=AUTH)
    assert refused.status == 409
    assert "a.openfaas-fn, b.openfaas-fn" in await refused.text()
    for name in ("a", "b"):
        await client.delete("/system/functions", json={"functionName": name}, headers=AUTH)
    assert (await client.delete("/system/volumes", json={"name": "data"}, headers=AUTH)).status == 200
    assert "pyfaasd-pft0-data" not in world.runtime.volume_store
    assert (await client.delete("/system/volumes", json={"name": "data"}, headers=AUTH)).status == 404


async def test_host_paths_only_under_the_configured_roots(make_stack: MakeStack, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    (root / "media").mkdir(parents=True)
    _, closed = await make_stack()
    refused = await create(closed, {"name": "media", "hostPath": str(root / "media")}, status=400)
    assert "PYFAASD_VOLUME_HOST_ROOTS" in refused["text"]
    world, client = await make_stack((root,))
    made = await create(client, {"name": "media", "hostPath": str(root / "media")})
    assert (made["type"], made["hostPath"]) == ("host", str(root / "media"))
    options = world.runtime.volume_store["pyfaasd-pft0-media"].options
    assert options == {"type": "none", "o": "bind", "device": str(root / "media")}
    for outside in ("/etc", str(root / ".." / "srv2"), str(root / "missing"), "relative/path"):
        await create(client, {"name": "other", "hostPath": outside}, status=400)


async def test_an_nfs_share_reaches_docker_as_its_local_driver_mounts_nfs(make_stack: MakeStack) -> None:
    world, client = await make_stack()
    share = {"server": "10.0.0.5", "path": "/export", "options": "nfsvers=4,hard"}
    made = await create(client, {"name": "nas", "nfs": share})
    assert (made["type"], made["nfs"]) == ("nfs", share)
    assert world.runtime.volume_store["pyfaasd-pft0-nas"].options == {
        "type": "nfs",
        "o": "addr=10.0.0.5,nfsvers=4,hard",
        "device": ":/export",
    }


async def test_the_seeds_nfs_options_pass_as_they_are(make_stack: MakeStack) -> None:
    world, client = await make_stack()
    options = "vers=3,nolock,proto=tcp,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport"
    await create(client, {"name": "nas", "nfs": {"server": "10.0.0.5", "path": "/export", "options": options}})
    assert world.runtime.volume_store["pyfaasd-pft0-nas"].options["o"] == f"addr=10.0.0.5,{options}"


async def test_a_share_that_cannot_be_mounted_is_422_naming_it_and_leaves_nothing(make_stack: MakeStack) -> None:
    world, client = await make_stack()
    await create(client, {"name": "nas", "nfs": {"server": "10.0.0.5", "path": "/export"}})
    world.runtime.mount_errors["pyfaasd-pft0-nas"] = "failed to mount local volume: no such device"
    reply = await deploy(client, "fn", {"com.pyfaasd.volume.nas": "/mnt/nas"})
    assert reply.status == 422
    text = await reply.text()
    assert "volume nas could not be mounted" in text
    assert "no such device" in text
    assert world.runtime.of("fn") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "Bad Name"}, "not a valid name"),
        ({"name": "auto"}, "reserved"),
        ({"name": "x", "hostPath": "/a", "nfs": {"server": "s", "path": "/p"}}, "not both"),
        ({"name": "x", "nfs": {"server": "s", "path": "relative"}}, "nfs.path"),
        ({"name": "x", "nfs": {"server": "s; rm", "path": "/p"}}, "nfs.server"),
        ({"name": "x", "nfs": {"server": "s", "path": "/p", "options": "addr=evil"}}, "nfs.options"),
    ],
)
async def test_bad_volume_requests_are_400_naming_the_field(
    make_stack: MakeStack, body: dict[str, Any], message: str
) -> None:
    world, client = await make_stack()
    assert message in (await create(client, body, status=400))["text"]
    assert world.runtime.volume_store == {}


async def test_a_duplicate_volume_is_409(make_stack: MakeStack) -> None:
    _, client = await make_stack()
    await create(client, {"name": "data"})
    assert "exists" in (await create(client, {"name": "data"}, status=409))["text"]


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"com.pyfaasd.volume.nope": "/mnt"}, "there is no volume nope"),
        ({"com.pyfaasd.volume.data": "relative"}, "is not a path"),
        ({"com.pyfaasd.volume.data": "/home/app/function"}, "clashes with /home/app/function"),
        ({"com.pyfaasd.volume.data": "/var/openfaas/secrets/x"}, "clashes with /var/openfaas/secrets"),
        ({"com.pyfaasd.volume.data": "/"}, "is not a path"),
        ({"com.pyfaasd.volume.data": "/mnt/a/../b"}, "is not a path"),
        ({"com.pyfaasd.volume.data": "/mnt:rx"}, "/path:ro"),
        ({"com.pyfaasd.volume.data": "/mnt", "com.pyfaasd.volume.auto": "/mnt/sub"}, "clashes with the mount"),
    ],
)
async def test_bad_mounts_are_refused_at_deploy_naming_them_and_leave_nothing(
    make_stack: MakeStack, annotations: dict[str, str], message: str
) -> None:
    world, client = await make_stack()
    await create(client, {"name": "data"})
    reply = await deploy(client, "fn", annotations)
    assert reply.status == 400
    assert message in await reply.text()
    assert world.runtime.of("fn") == []
    assert set(world.runtime.volume_store) == {"pyfaasd-pft0-data"}  # no auto volume made either


async def test_the_auto_volume_outlives_its_function_and_is_found_again(make_stack: MakeStack) -> None:
    world, client = await make_stack()
    annotations = {"com.pyfaasd.volume.auto": "/mnt/auto"}
    assert (await deploy(client, "keep", annotations)).status == 202
    auto = "pyfaasd-pft0-auto-keep-openfaas-fn"
    assert f"{auto}:/mnt/auto:rw" in world.runtime.of("keep")[0].binds
    assert (await listed(client))["auto-keep-openfaas-fn"]["auto"] == "keep.openfaas-fn"
    put = {"service": "keep", "image": "fn:2", "annotations": annotations}
    assert (await client.put("/system/functions", json=put, headers=AUTH)).status == 202
    await client.delete("/system/functions", json={"functionName": "keep"}, headers=AUTH)
    assert auto in world.runtime.volume_store  # removing a function never deletes data
    assert (await deploy(client, "keep", annotations)).status == 202
    assert [name for name in world.runtime.volume_store if "auto" in name] == [auto]


async def test_a_failed_first_deploy_removes_the_auto_volume_it_made(make_stack: MakeStack) -> None:
    world, client = await make_stack()
    world.runtime.behaviours["fn:1"] = Behaviour(exit_on_start=1)
    reply = await deploy(client, "broken", {"com.pyfaasd.volume.auto": "/mnt/auto"})
    assert reply.status == 422
    assert world.runtime.volume_store == {}
    assert world.runtime.of("broken") == []


async def test_a_volume_cannot_be_removed_while_a_deploy_that_mounts_it_runs(make_stack: MakeStack) -> None:
    world, client = await make_stack()
    await create(client, {"name": "data"})
    world.runtime.behaviours["fn:1"] = Behaviour(probes_until_ready=20)  # a replica that takes a while
    deploying = asyncio.create_task(deploy(client, "slow", {"com.pyfaasd.volume.data": "/mnt/data"}))
    await until(lambda: bool(world.runtime.of("slow")), what="the deploy to create its container")
    refused = await client.delete("/system/volumes", json={"name": "data"}, headers=AUTH)
    assert (refused.status, "slow.openfaas-fn" in await refused.text()) == (409, True)
    assert (await deploying).status == 202
