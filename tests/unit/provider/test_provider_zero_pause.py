"""Scale to zero with ``PYFAASD_ZERO_PAUSE``: the last replica is paused (counted as none, out of the hosts file),
thawed by a wake from zero, stopped once the window ends, removed with its function, never woken for a newer spec,
kept across a provider restart and attached again when the bridge is rebuilt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from provider.models import FunctionDeployment
from tests.unit.provider.fakes import World, until

NS = "openfaas-fn"


async def _world(state_dir: Path, zero_pause_s: float) -> AsyncIterator[World]:
    made = World(state_dir, zero_pause_s=zero_pause_s)
    await made.start()
    try:
        yield made
    finally:
        await made.core.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """A provider whose functions at zero keep their last replica paused for five minutes."""
    async for made in _world(tmp_path, 300.0):
        yield made


@pytest.fixture
async def short(tmp_path: Path) -> AsyncIterator[World]:
    """A provider with a pause window of 0.2 s."""
    async for made in _world(tmp_path, 0.2):
        yield made


def paused_ips(world: World, name: str) -> list[str]:
    """The addresses attached to the bridge for the function's paused containers."""
    pids = {c.pid for c in world.runtime.of(name, paused=True)}
    return sorted(str(ip) for ip, pid in world.network.attached.items() if pid in pids)


async def test_scale_to_zero_pauses_the_first_replica_and_counts_it_as_none(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
    [first, _second] = world.runtime.of("echo")
    ip = world.hosts("echo")[0]

    status = await world.orchestrator.scale(NS, "echo", 0)

    assert (status.replicas, status.available_replicas) == (0, 0)
    [listed] = world.orchestrator.list_functions(NS)
    assert (listed.replicas, listed.available_replicas) == (0, 0)
    assert world.hosts("echo") == []
    assert [c.id for c in world.runtime.of("echo")] == [first.id]  # the second is removed
    assert world.runtime.of("echo", paused=True)[0].id == first.id
    assert world.runtime.of("echo", running=True) == []
    assert paused_ips(world, "echo") == [ip]  # its address and attachment are kept
    assert (await world.orchestrator.usage(NS, "echo")).cpu == 0


async def test_a_wake_from_zero_thaws_the_paused_replica_instead_of_starting_one(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")
    await world.orchestrator.scale(NS, "echo", 0)
    world.runtime.actions.clear()

    status = await world.orchestrator.scale(NS, "echo", 1)

    assert status.available_replicas == 1
    assert world.serving("echo", 1)
    assert [c.id for c in world.runtime.of("echo")] == [container.id]
    assert container.starts == 1  # never started again
    assert ("unpause", container.name) in world.runtime.actions
    assert not any(what in ("start", "create") for what, _ in world.runtime.actions)


async def test_a_scale_to_more_than_one_thaws_one_and_starts_the_rest(world: World) -> None:
    await world.deploy("echo")
    await world.orchestrator.scale(NS, "echo", 0)

    status = await world.orchestrator.scale(NS, "echo", 3)

    assert status.available_replicas == 3
    assert world.serving("echo", 3)
    assert world.runtime.of("echo", paused=True) == []


async def test_after_the_window_the_paused_replica_is_stopped_and_a_wake_starts_it(short: World) -> None:
    await short.deploy("echo")
    [container] = short.runtime.of("echo")
    await short.orchestrator.scale(NS, "echo", 0)
    assert container.paused

    await until(lambda: not container.running, what="the paused replica to be stopped after the window")

    assert not container.paused
    assert short.runtime.by_pid(container.pid) is None  # its process, and so its namespace and veth, are gone
    assert [c.id for c in short.runtime.of("echo")] == [container.id]  # a parked container, as before
    status = await short.orchestrator.scale(NS, "echo", 1)
    assert status.available_replicas == 1
    assert container.starts == 2
    assert short.serving("echo", 1)


async def test_a_replica_woken_and_paused_again_gets_a_whole_new_window(short: World) -> None:
    await short.deploy("echo")
    [container] = short.runtime.of("echo")
    await short.orchestrator.scale(NS, "echo", 0)
    await asyncio.sleep(0.12)
    await short.orchestrator.scale(NS, "echo", 1)
    await short.orchestrator.scale(NS, "echo", 0)  # paused again, 0.12 s into the first window

    await asyncio.sleep(0.15)  # the first window is over, the second is not

    assert container.paused
    await until(lambda: not container.running, what="the second window to end")


async def test_with_no_window_scale_to_zero_stops_the_replica(tmp_path: Path) -> None:
    async for world in _world(tmp_path, 0.0):
        await world.deploy("echo")
        await world.orchestrator.scale(NS, "echo", 0)

        [container] = world.runtime.of("echo")
        assert not container.running
        assert not any(what == "pause" for what, _ in world.runtime.actions)


async def test_delete_removes_a_paused_replica_and_its_address(world: World) -> None:
    await world.deploy("echo")
    await world.orchestrator.scale(NS, "echo", 0)

    await world.orchestrator.delete(NS, "echo")

    assert world.runtime.of("echo") == []
    assert world.network.allocations == {}
    assert world.network.attached == {}


async def test_an_update_at_zero_removes_the_paused_replica_and_a_wake_starts_the_new_spec(world: World) -> None:
    await world.deploy("echo", envVars={"v": "1"})
    [old] = world.runtime.of("echo")
    await world.orchestrator.scale(NS, "echo", 0)

    await world.orchestrator.update(
        FunctionDeployment.parse({"service": "echo", "image": "fn:1", "envVars": {"v": "2"}})
    )
    await until(lambda: old.id not in world.runtime.containers, what="the old paused replica to be removed")
    world.runtime.actions.clear()

    status = await world.orchestrator.scale(NS, "echo", 1)

    assert status.available_replicas == 1
    [new] = world.runtime.of("echo")
    assert new.id != old.id
    assert "v=2" in new.env
    assert not any(what == "unpause" for what, _ in world.runtime.actions)
    assert world.serving("echo", 1)


async def test_a_restarted_provider_keeps_the_paused_replica_at_zero_and_can_wake_it(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")
    await world.orchestrator.scale(NS, "echo", 0)
    ip = paused_ips(world, "echo")

    await world.restart()

    status = world.orchestrator.get(NS, "echo").status()
    assert (status.replicas, status.available_replicas) == (0, 0)
    assert world.hosts("echo") == []
    assert container.paused
    assert paused_ips(world, "echo") == ip
    status = await world.orchestrator.scale(NS, "echo", 1)
    assert status.available_replicas == 1
    assert container.starts == 1
    assert world.serving("echo", 1)


async def test_a_restarted_provider_with_the_window_turned_off_stops_a_paused_replica(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")
    await world.orchestrator.scale(NS, "echo", 0)

    world.config = replace(world.config, zero_pause_s=0.0)
    await world.restart()

    assert not container.running
    assert [c.id for c in world.runtime.of("echo")] == [container.id]
    assert world.orchestrator.get(NS, "echo").status().replicas == 0


async def test_a_restarted_provider_that_finds_replicas_wanted_thaws_the_paused_one(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")
    await world.orchestrator.scale(NS, "echo", 0)
    world.scale_store.set(NS, "echo", 1)  # it was being woken when the provider stopped

    await world.restart()

    await until(lambda: world.serving("echo", 1), what="the replica to serve")
    assert container.starts == 1


async def test_a_rebuilt_bridge_attaches_paused_replicas_again(world: World) -> None:
    await world.deploy("echo")
    await world.deploy("other")
    await world.orchestrator.scale(NS, "echo", 0)
    ip = paused_ips(world, "echo")
    world.network.bridge_problem = "bridge pft0 does not exist"

    await world.core.bridge.check()

    assert paused_ips(world, "echo") == ip
    assert world.hosts("echo") == []
    assert world.serving("other", 1)
