"""The bridge deleted under running functions: noticed, reported on /healthz, rebuilt, every replica attached again."""

from __future__ import annotations

from dataclasses import replace

from netconf import IptablesError
from tests.unit.provider.fakes import AUTH, Client, World, until

GONE = "bridge pft0 does not exist"


async def test_a_deleted_bridge_is_rebuilt_and_every_running_replica_attached_again(world: World) -> None:
    await world.deploy("a", labels={"com.openfaas.scale.min": "2"})
    await world.deploy("b")
    assert world.serving("a", 2)
    assert world.serving("b", 1)
    world.network.bridge_problem = GONE  # and check_bridge says so

    await world.core.bridge.check()

    assert world.network.bridges_ensured == 1
    assert world.serving("a", 2)  # the same addresses, attached again
    assert world.serving("b", 1)
    assert world.core.problem() is None
    assert world.core.bridge.repairs == 1


async def test_a_whole_bridge_is_left_alone(world: World) -> None:
    await world.deploy("a")

    await world.core.bridge.check()

    assert world.network.bridges_ensured == 0
    assert world.core.bridge.repairs == 0


async def test_healthz_is_503_naming_the_damage_until_a_repair_succeeds(stack: tuple[World, Client]) -> None:
    world, client = stack
    await world.deploy("a")
    world.network.bridge_problem = GONE
    world.network.bridge_failures.append(IptablesError("iptables -w 10 -N PYFAASD-FWD-pft0 failed (exit 4)"))

    await world.core.bridge.check()  # the repair fails: reported, retried at the next check

    response = await client.get("/healthz", headers=AUTH)
    assert response.status == 503
    text = await response.text()
    assert GONE in text
    assert "repairing it failed: iptables" in text

    await world.core.bridge.check()

    assert (await client.get("/healthz", headers=AUTH)).status == 200
    assert world.serving("a", 1)


async def test_the_watch_repairs_without_being_asked(world: World) -> None:
    await world.deploy("a")
    world.timings = replace(world.timings, bridge_check_s=0.01)
    await world.restart()  # the watch starts with the provider
    world.network.bridge_problem = GONE

    await until(lambda: world.network.bridges_ensured == 1, what="the watch to rebuild the bridge")
    await until(lambda: world.serving("a", 1), what="the replica attached again")
