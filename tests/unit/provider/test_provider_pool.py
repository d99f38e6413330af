"""The warm pool over the fakes: filling, claiming with everything a fresh replica gets, who may not claim, one
function per container, waking from zero, and recovery of claims, idle containers and leftovers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from provider.code_functions import ANNOTATION_CODE, LABEL_RUNTIME
from provider.docker_runtime import LABEL_POOL_SLOT
from provider.models import FunctionDeployment
from provider.pool import LABEL_POOL_READY
from tests.unit.provider.fakes import POOL_RUNTIME, FakeContainer, World, until

HANDLER = b"def handle(event, context):\n    return 'hi'\n"


@pytest.fixture
async def pooled(tmp_path: Path) -> AsyncIterator[World]:
    """A started provider keeping two idle containers of the runtime ``POOL_RUNTIME``, with a stored bundle."""
    world = World(tmp_path, pool_size=2)
    world.runtime.images[POOL_RUNTIME] = "sha256:rtpy"
    world.runtime.image_labels[POOL_RUNTIME] = {LABEL_RUNTIME: "python3.11", LABEL_POOL_READY: "1"}
    await world.start()
    await full(world)
    try:
        yield world
    finally:
        await world.core.close()


def idle(world: World) -> list[FakeContainer]:
    return [c for c in world.runtime.containers.values() if c.pooled and c.running]


async def full(world: World) -> set[str]:
    await until(lambda: world.core.pool.idle() == {POOL_RUNTIME: 2}, what="a full pool")
    return {c.id for c in idle(world)}


async def deploy_code(world: World, name: str, **fields: object) -> FakeContainer:
    bundle, _new = world.core.code.store.put(HANDLER, "handler.py")
    spec = FunctionDeployment.parse(
        {"service": name, "image": POOL_RUNTIME, "annotations": {ANNOTATION_CODE: bundle.digest}, **fields}
    )
    await world.orchestrator.deploy(spec)
    [container] = world.runtime.of(name, running=True)
    return container


async def test_the_pool_fills_with_started_attached_containers_that_are_no_function(pooled: World) -> None:
    ids = {c.id for c in idle(pooled)}
    assert len(ids) == 2
    assert set(pooled.network.allocations) >= ids  # on the bridge before anyone needs them
    assert await pooled.runtime.list_functions() == []
    assert pooled.core.state.functions == {}


async def test_a_code_deploy_claims_a_pooled_container_with_the_functions_whole_config(pooled: World) -> None:
    pool = {c.id for c in idle(pooled)}
    await pooled.secrets.create("openfaas-fn", "token", b"s3cret")
    container = await deploy_code(
        pooled,
        "hello",
        envVars={"GREETING": "hi"},
        secrets=["token"],
        limits={"memory": "64Mi", "cpu": "250m"},
        labels={"team": "blue"},
    )
    assert container.id in pool
    assert container.name.startswith("hello.openfaas-fn.0.")  # renamed as a fresh replica is named
    assert container.resources == {"Memory": 64 << 20, "MemorySwap": 64 << 20, "NanoCpus": 250_000_000}
    slot = pooled.slots.path(container.labels[LABEL_POOL_SLOT])
    claim = json.loads((slot / "claim.json").read_text())["labels"]
    assert (claim["com.pyfaasd.function"], claim["team"]) == ("hello", "blue")
    env = json.loads((slot / "control" / "load.json").read_text())["env"]
    assert env["GREETING"] == "hi"
    assert (slot / "function" / "handler.py").read_bytes() == HANDLER
    secret = slot / "secrets" / "token"
    assert secret.read_bytes() == b"s3cret"
    assert secret.stat().st_ino == pooled.secrets.path("openfaas-fn", "token").stat().st_ino  # the same file
    fn = pooled.core.state.functions[("openfaas-fn", "hello")]
    assert [r.ready for r in fn.replicas.values()] == [True]
    assert await full(pooled)  # refilled
    assert container.id not in {c.id for c in idle(pooled)}


async def test_functions_the_pool_cannot_serve_get_fresh_containers(pooled: World) -> None:
    pool = await full(pooled)
    await pooled.orchestrator.deploy(FunctionDeployment.parse({"service": "img", "image": "fn:1"}))
    readonly = await deploy_code(pooled, "ro", readOnlyRootFilesystem=True)  # the pool's root is writable
    assert readonly.id not in pool
    assert {c.id for c in idle(pooled)} == pool
    [image] = pooled.runtime.of("img")
    assert image.id not in pool


async def test_a_claimed_container_goes_with_its_function_and_is_never_pooled_again(pooled: World) -> None:
    container = await deploy_code(pooled, "once")
    slot = container.labels[LABEL_POOL_SLOT]
    await pooled.orchestrator.delete("openfaas-fn", "once")
    assert container.id not in pooled.runtime.containers
    assert not pooled.slots.path(slot).exists()
    assert container.id not in await full(pooled)
    again = await deploy_code(pooled, "once")
    assert again.id != container.id


async def test_waking_from_zero_claims_a_pooled_container_and_removes_the_parked_one(pooled: World) -> None:
    first = await deploy_code(pooled, "zz")
    await pooled.orchestrator.scale("openfaas-fn", "zz", 0)
    assert not first.running
    pool = await full(pooled)
    await pooled.orchestrator.scale("openfaas-fn", "zz", 1)
    [woken] = pooled.runtime.of("zz", running=True)
    assert woken.id in pool
    await until(lambda: first.id not in pooled.runtime.containers, what="the parked container removed")
    fn = pooled.core.state.functions[("openfaas-fn", "zz")]
    assert list(fn.replicas) == [woken.id]


async def test_recovery_keeps_claims_adopts_idle_ones_and_removes_leftovers(pooled: World) -> None:
    replica = await deploy_code(pooled, "kept")
    pool = await full(pooled)
    # What a crash can leave: a claim whose hand-over never happened, a slot with no container, a stopped idle one.
    [interrupted, stopped] = sorted(pool)
    pooled.slots.claim(pooled.runtime.containers[interrupted].labels[LABEL_POOL_SLOT], {"com.pyfaasd.function": "x"})
    pooled.slots.make("pyfaasd-pool-orphan")
    pooled.runtime.exit(stopped, 137)

    await pooled.restart()

    fn = pooled.core.state.functions[("openfaas-fn", "kept")]
    assert list(fn.replicas) == [replica.id]
    assert fn.replicas[replica.id].ready
    assert interrupted not in pooled.runtime.containers
    assert stopped not in pooled.runtime.containers
    assert not pooled.slots.path("pyfaasd-pool-orphan").exists()
    refilled = await full(pooled)
    assert not refilled & pool
    slots = set(pooled.slots.slots())
    assert slots == {c.labels[LABEL_POOL_SLOT] for c in pooled.runtime.containers.values()}
    assert len(slots) == 3


async def test_an_idle_container_is_adopted_with_its_address_after_a_restart(pooled: World) -> None:
    pool = await full(pooled)
    addresses = {cid: pooled.network.allocations[cid] for cid in pool}
    await pooled.restart()
    assert await full(pooled) == pool
    assert {cid: pooled.network.allocations[cid] for cid in pool} == addresses


async def test_a_container_whose_claim_record_is_unreadable_is_never_taken_as_idle(pooled: World) -> None:
    replica = await deploy_code(pooled, "damaged")
    slot = pooled.slots.path(replica.labels[LABEL_POOL_SLOT])
    (slot / "claim.json").write_text("{")  # damaged on disk: the restarted provider cannot read it
    await pooled.restart()
    assert replica.id not in pooled.runtime.containers  # removed, not adopted into the pool
    assert replica.id not in await full(pooled)


async def test_a_function_the_pool_cannot_serve_wakes_its_parked_container(pooled: World) -> None:
    parked = await deploy_code(pooled, "rz", readOnlyRootFilesystem=True)
    await pooled.orchestrator.scale("openfaas-fn", "rz", 0)
    pool = await full(pooled)
    await pooled.orchestrator.scale("openfaas-fn", "rz", 1)
    assert parked.running  # started again, not replaced
    assert {c.id for c in idle(pooled)} == pool


async def test_a_runtime_whose_watchdog_cannot_wait_gets_no_pool(tmp_path: Path) -> None:
    world = World(tmp_path, pool_size=2)
    world.runtime.images[POOL_RUNTIME] = "sha256:old"
    world.runtime.image_labels[POOL_RUNTIME] = {LABEL_RUNTIME: "python3.11"}  # built before the pool
    await world.start()
    try:
        refills = [t for t in asyncio.all_tasks() if t.get_name().startswith("pool refill")]
        assert refills  # it did try
        await asyncio.gather(*refills)
        assert world.core.pool.idle() == {POOL_RUNTIME: 0}
        assert world.runtime.containers == {}
    finally:
        await world.core.close()


async def test_a_rebuilt_bridge_gets_the_idle_containers_attached_again(pooled: World) -> None:
    ids = await full(pooled)
    pooled.network.bridge_problem = "bridge pft0 does not exist"  # the fake's ensure_bridge drops every port

    await pooled.core.bridge.check()

    pids = {c.pid for c in idle(pooled) if c.id in ids}
    assert set(pooled.network.attached.values()) >= pids  # claimable again, on the new bridge
    assert pooled.core.pool.idle() == {POOL_RUNTIME: 2}


async def test_a_code_function_woken_within_the_pause_window_thaws_its_replica_and_leaves_the_pool(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, pool_size=2, zero_pause_s=300.0)
    world.runtime.images[POOL_RUNTIME] = "sha256:rtpy"
    world.runtime.image_labels[POOL_RUNTIME] = {LABEL_RUNTIME: "python3.11", LABEL_POOL_READY: "1"}
    await world.start()
    try:
        await full(world)
        first = await deploy_code(world, "zz")
        await world.orchestrator.scale("openfaas-fn", "zz", 0)
        assert first.paused
        pool = await full(world)

        await world.orchestrator.scale("openfaas-fn", "zz", 1)

        assert [c.id for c in world.runtime.of("zz")] == [first.id]
        assert not first.paused
        assert {c.id for c in idle(world)} == pool  # no claim
        assert world.serving("zz", 1)
    finally:
        await world.core.close()
