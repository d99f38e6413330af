"""Deploy, update, scale, delete, recovery, crash restarts and Docker's events, over in-memory Docker and bridge."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from provider.errors import (
    FunctionExistsError,
    FunctionNotFoundError,
    FunctionStartError,
    ImageUnavailableError,
    NamespaceInvalidError,
    SecretMissingError,
)
from provider.models import FunctionDeployment
from tests.unit.provider.fakes import FAST, Behaviour, FakeContainer, World, until

# -- deploy ----------------------------------------------------------------------------------------------------


async def test_deploy_answers_when_every_replica_is_ready_and_in_the_hosts_file(world: World) -> None:
    status = await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})

    assert (status.replicas, status.available_replicas) == (2, 2)
    assert len(world.runtime.of("echo", running=True)) == 2
    assert len(world.hosts("echo")) == 2
    assert world.serving("echo", 2)
    assert world.scale_store.get("openfaas-fn", "echo") == 2
    assert [s.spec.service for s in world.orchestrator.list_functions("openfaas-fn")] == ["echo"]


async def test_a_second_deploy_of_the_same_name_is_refused_and_changes_nothing(world: World) -> None:
    await world.deploy("echo")
    before = set(world.runtime.containers)

    with pytest.raises(FunctionExistsError, match="already exists"):
        await world.deploy("echo", image="fn:2")
    assert set(world.runtime.containers) == before


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        pytest.param({"secrets": ["db-password"]}, SecretMissingError, "db-password", id="missing-secret"),
        pytest.param({"image": "nowhere:1"}, ImageUnavailableError, "nowhere:1", id="missing-image"),
        pytest.param({"namespace": "nope"}, NamespaceInvalidError, "namespace nope", id="unknown-namespace"),
    ],
)
async def test_a_refused_deploy_creates_nothing(
    world: World, fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await world.orchestrator.deploy(FunctionDeployment.parse({"service": "echo", "image": "fn:1", **fields}))
    assert world.runtime.actions == []
    assert world.network.allocations == {}


async def test_an_image_that_is_not_local_is_pulled(world: World) -> None:
    world.runtime.pullable.add("registry.example/fn:3")

    await world.deploy("echo", image="registry.example/fn:3")

    assert world.serving("echo", 1)


async def test_a_replica_that_exits_at_start_fails_the_deploy_and_leaves_nothing(world: World) -> None:
    world.runtime.behaviours["fn:1"] = Behaviour(exit_on_start=3)

    with pytest.raises(FunctionStartError, match=r"exited \(status 3\)"):
        await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})

    assert world.runtime.containers == {}
    assert world.network.allocations == {}
    assert world.hosts("echo") == []
    with pytest.raises(FunctionNotFoundError):
        world.orchestrator.get("openfaas-fn", "echo")


async def test_a_replica_that_never_answers_healthy_fails_with_its_last_output(world: World) -> None:
    world.runtime.behaviours["fn:1"] = Behaviour(never_ready=True, output=("listening", "oops: bad config"))

    with pytest.raises(FunctionStartError, match="did not become ready") as failure:
        await world.deploy("echo")

    assert "last output: listening | oops: bad config" in str(failure.value)
    assert world.runtime.containers == {}


async def test_a_replica_that_exits_while_starting_up_is_reported_with_its_status(world: World) -> None:
    world.runtime.behaviours["fn:1"] = Behaviour(exit_when_probed=2)

    with pytest.raises(FunctionStartError, match=r"did not become ready: its container exited \(status 2\)"):
        await world.deploy("echo")
    assert world.runtime.containers == {}


# -- update ----------------------------------------------------------------------------------------------------


async def test_update_is_rolling_new_replicas_serve_before_the_old_ones_stop(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
    old = {c.name for c in world.runtime.of("echo")}

    status = await world.orchestrator.update(_spec("echo", "fn:2", min_scale=2))

    assert status.available_replicas == 2
    await until(lambda: {c.name for c in world.runtime.of("echo")}.isdisjoint(old), what="the old replicas to go")
    assert {c.image for c in world.runtime.of("echo", running=True)} == {"fn:2"}
    assert world.serving("echo", 2)
    actions = world.runtime.actions
    last_new_start = max(i for i, (what, name) in enumerate(actions) if what == "start" and name not in old)
    first_old_stop = min(i for i, (what, name) in enumerate(actions) if what in ("stop", "remove") and name in old)
    assert last_new_start < first_old_stop


async def test_a_failed_update_leaves_the_old_replicas_serving(world: World) -> None:
    await world.deploy("echo")
    before = world.hosts("echo")
    world.runtime.behaviours["fn:2"] = Behaviour(exit_on_start=1)

    with pytest.raises(FunctionStartError):
        await world.orchestrator.update(_spec("echo", "fn:2"))

    assert world.hosts("echo") == before
    assert [c.image for c in world.runtime.of("echo")] == ["fn:1"]
    assert world.orchestrator.get("openfaas-fn", "echo").spec.image == "fn:1"


async def test_update_of_a_function_at_zero_keeps_it_at_zero_with_one_parked_container(world: World) -> None:
    await world.deploy("echo")
    await world.orchestrator.scale("openfaas-fn", "echo", 0)

    await world.orchestrator.update(_spec("echo", "fn:2"))

    await until(lambda: len(world.runtime.of("echo")) == 1, what="the old parked container to go")
    [parked] = world.runtime.of("echo")
    assert (parked.image, parked.running) == ("fn:2", False)
    assert world.hosts("echo") == []


async def test_update_with_the_same_spec_and_image_changes_nothing(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
    before = {c.id for c in world.runtime.of("echo")}
    actions = len(world.runtime.actions)

    status = await world.orchestrator.update(_spec("echo", "fn:1", min_scale=2))

    assert status.available_replicas == 2
    assert {c.id for c in world.runtime.of("echo")} == before
    assert world.runtime.actions[actions:] == []  # nothing created, stopped or removed: scripts/run run twice


async def test_update_with_the_same_spec_rolls_when_the_tag_names_a_new_image(world: World) -> None:
    await world.deploy("echo")
    before = {c.id for c in world.runtime.of("echo")}
    world.runtime.images["fn:1"] = "sha256:fn1-rebuilt"  # docker build -t fn:1 again

    await world.orchestrator.update(_spec("echo", "fn:1"))

    await until(lambda: not {c.id for c in world.runtime.of("echo")} & before, what="the old replica to go")
    assert [c.image_id for c in world.runtime.of("echo", running=True)] == ["sha256:fn1-rebuilt"]


async def test_update_with_a_changed_field_rolls(world: World) -> None:
    await world.deploy("echo")
    before = {c.id for c in world.runtime.of("echo")}

    await world.orchestrator.update(
        FunctionDeployment.parse({"service": "echo", "image": "fn:1", "envVars": {"K": "v"}})
    )

    await until(lambda: not {c.id for c in world.runtime.of("echo")} & before, what="the old replica to go")


async def test_update_of_a_missing_function_is_not_found(world: World) -> None:
    with pytest.raises(FunctionNotFoundError):
        await world.orchestrator.update(_spec("ghost", "fn:2"))


# -- scale -----------------------------------------------------------------------------------------------------


async def test_scale_up_and_down(world: World) -> None:
    await world.deploy("echo")
    first = world.runtime.of("echo")[0].id

    await world.orchestrator.scale("openfaas-fn", "echo", 3)
    assert world.serving("echo", 3)

    await world.orchestrator.scale("openfaas-fn", "echo", 1)
    assert len(world.hosts("echo")) == 1
    await until(lambda: len(world.runtime.of("echo")) == 1, what="the extra replicas to be removed")
    assert world.runtime.of("echo")[0].id == first  # the lowest index stays
    assert world.serving("echo", 1)
    assert len(world.network.allocations) == 1
    assert world.scale_store.get("openfaas-fn", "echo") == 1


async def test_scale_to_zero_parks_one_container_and_scale_from_zero_reuses_it(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})

    status = await world.orchestrator.scale("openfaas-fn", "echo", 0)

    assert (status.replicas, status.available_replicas) == (0, 0)
    assert world.hosts("echo") == []
    [parked] = world.runtime.of("echo")
    assert not parked.running
    assert world.scale_store.get("openfaas-fn", "echo") == 0

    status = await world.orchestrator.scale("openfaas-fn", "echo", 1)

    assert status.available_replicas == 1
    assert [c.id for c in world.runtime.of("echo", running=True)] == [parked.id]
    assert world.serving("echo", 1)


async def test_a_failed_scale_up_keeps_what_started_and_says_so_in_the_desired_count(world: World) -> None:
    await world.deploy("echo")
    world.runtime.behaviours["fn:1"] = Behaviour(exit_on_start=1)  # new replicas of the same image now fail

    with pytest.raises(FunctionStartError):
        await world.orchestrator.scale("openfaas-fn", "echo", 3)

    status = world.orchestrator.get("openfaas-fn", "echo").status()
    assert (status.replicas, status.available_replicas) == (1, 1)
    assert world.scale_store.get("openfaas-fn", "echo") == 1
    assert world.serving("echo", 1)
    assert len(world.runtime.of("echo")) == 1


async def test_concurrent_scale_requests_are_applied_one_after_the_other(world: World) -> None:
    await world.deploy("echo")

    await asyncio.gather(
        world.orchestrator.scale("openfaas-fn", "echo", 4), world.orchestrator.scale("openfaas-fn", "echo", 2)
    )

    await until(lambda: len(world.runtime.of("echo")) == 2, what="the scale down to finish")
    assert world.serving("echo", 2)
    assert world.orchestrator.get("openfaas-fn", "echo").desired == 2


# -- delete ----------------------------------------------------------------------------------------------------


async def test_delete_removes_containers_addresses_hosts_lines_and_the_stored_count(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
    await world.deploy("other")

    await world.orchestrator.delete("openfaas-fn", "echo")

    assert world.runtime.of("echo") == []
    assert world.hosts("echo") == []
    assert len(world.network.allocations) == 1  # other's
    assert world.scale_store.get("openfaas-fn", "echo") is None
    assert world.serving("other", 1)
    with pytest.raises(FunctionNotFoundError):
        await world.orchestrator.delete("openfaas-fn", "echo")


# -- recovery --------------------------------------------------------------------------------------------------


async def test_a_restarted_provider_adopts_running_replicas_with_their_addresses(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
    ids, hosts = set(world.runtime.containers), world.hosts("echo")
    world.runtime.actions.clear()

    await world.restart()

    assert set(world.runtime.containers) == ids
    assert world.hosts("echo") == hosts
    assert world.runtime.actions == []  # nothing created, started or stopped
    assert world.orchestrator.get("openfaas-fn", "echo").status().available_replicas == 2


async def test_after_a_reboot_stopped_replicas_are_started_again_and_zero_stays_zero(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
    await world.deploy("idle")
    await world.orchestrator.scale("openfaas-fn", "idle", 0)
    ids = set(world.runtime.containers)
    await world.core.close()
    for container in world.runtime.of("echo", running=True):
        world.runtime.exit(container.id, 0)

    await world.restart()

    assert set(world.runtime.containers) == ids
    assert world.serving("echo", 2)
    assert world.runtime.of("idle", running=True) == []
    assert world.orchestrator.get("openfaas-fn", "idle").desired == 0


async def test_recovery_keeps_the_newest_generation_and_removes_an_interrupted_updates_leftovers(
    world: World,
) -> None:
    await world.deploy("echo")
    [old] = world.runtime.of("echo")
    await world.core.close()
    # An update that was under way when the provider died: a newer generation's container runs beside the old.
    newer = dict(old.labels, **{"com.pyfaasd.generation": "f" * 32})
    new_id = await world.runtime.create("echo.openfaas-fn.0.ffffffff", {"Image": "fn:2", "Labels": newer})
    await world.runtime.start(new_id)

    await world.restart()

    assert list(world.runtime.containers) == [new_id]
    assert world.serving("echo", 1)
    assert old.id not in world.network.allocations


async def test_recovery_frees_the_addresses_of_containers_that_are_gone_and_replaces_them(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
    await world.core.close()
    gone = world.runtime.of("echo")[0].id
    world.runtime.remove_outside(gone)

    await world.restart()

    assert gone not in world.network.allocations
    assert world.serving("echo", 2)
    assert len(world.network.allocations) == 2


# -- Docker's events -------------------------------------------------------------------------------------------


async def test_a_killed_replica_leaves_the_hosts_file_and_comes_back_at_its_address(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")
    hosts = world.hosts("echo")

    with capture_logs() as logs:
        world.runtime.exit(container.id, 137)
        await until(lambda: world.hosts("echo") == [], what="the dead replica to leave the hosts file")
        await until(lambda: world.hosts("echo") == hosts, what="the replica to come back")

    assert container.starts == 2
    assert world.serving("echo", 1)
    assert any(e["event"] == "replica_died" and e["exit_code"] == 137 for e in logs)


async def test_a_replica_that_keeps_dying_is_restarted_with_growing_delays(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")

    with capture_logs() as logs:
        for starts in (2, 3, 4):
            world.runtime.exit(container.id, 1)
            await until(partial(restarted, world, container, starts), what="a restart")

    delays = [e["restart_in_s"] for e in logs if e["event"] == "replica_died"]
    assert delays == list(world.timings.restart_backoff_s[:3])
    assert delays == sorted(delays)


async def test_an_oom_killed_replica_is_logged_and_restarted(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")

    with capture_logs() as logs:
        world.runtime.exit(container.id, 137, oom=True)
        await until(lambda: container.starts == 2 and world.serving("echo", 1), what="the replica back")

    assert [e for e in logs if e["event"] == "replica_oom_killed"]


async def test_docker_restart_reattaches_the_new_namespace_at_the_same_address(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")
    [ip] = world.hosts("echo")
    old_pid = container.pid

    world.runtime.restart_outside(container.id)

    await until(lambda: world.ips("echo") == [ip] and world.hosts("echo") == [ip], what="the replica re-attached")
    assert container.pid != old_pid
    assert container.starts == 2  # started by Docker only, not again by the provider


async def test_a_replica_removed_from_outside_is_replaced(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")

    world.runtime.remove_outside(container.id)

    await until(lambda: world.serving("echo", 1) and container.id not in world.runtime.containers, what="a new one")
    assert len(world.network.allocations) == 1


async def test_the_stops_of_a_scale_to_zero_are_not_taken_for_crashes(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "3"})

    await world.orchestrator.scale("openfaas-fn", "echo", 0)
    await until(lambda: len(world.runtime.of("echo")) == 1, what="the scale down")
    await asyncio.sleep(0.3)  # longer than the restart backoff: a restart would have happened by now

    assert world.runtime.of("echo", running=True) == []
    assert world.hosts("echo") == []


async def test_the_removals_of_a_rolling_update_are_not_replaced(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})

    await world.orchestrator.update(_spec("echo", "fn:2", min_scale=2))
    await until(lambda: {c.image for c in world.runtime.of("echo")} == {"fn:2"}, what="the old ones to go")
    await asyncio.sleep(0.3)

    assert len(world.runtime.of("echo")) == 2
    assert world.serving("echo", 2)


async def test_a_replica_dying_while_its_function_is_deleted_is_not_brought_back(tmp_path: Path) -> None:
    world = World(tmp_path, timings=replace(FAST, restart_backoff_s=(0.2,)))
    await world.start()
    try:
        await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
        [first, _] = world.runtime.of("echo")

        with capture_logs() as logs:
            world.runtime.exit(first.id, 1)
            await until(lambda: any(e["event"] == "replica_died" for e in logs), what="the restart to be planned")
            await world.orchestrator.delete("openfaas-fn", "echo")
            await asyncio.sleep(0.5)  # past the restart's delay

        assert world.runtime.of("echo") == []
        assert world.network.allocations == {}
        assert [e for e in logs if e["event"] == "replica_restart_failed"] == []
        assert first.starts == 1
    finally:
        await world.core.close()


async def test_a_crash_missed_while_the_event_stream_was_down_is_found_by_the_resync(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")

    world.runtime.end_streams()  # dockerd restarts ...
    await until(lambda: world.runtime.following == 0, what="the stream to end")
    world.runtime.exit(container.id, 137)  # ... and the replica died meanwhile, unseen

    await until(lambda: container.starts == 2 and world.serving("echo", 1), timeout=5, what="the resync")
    await until(lambda: world.runtime.following == 1, what="the follower to subscribe again")


def restarted(world: World, container: FakeContainer, starts: int) -> bool:
    return container.starts == starts and world.serving("echo", 1)


def _spec(name: str, image: str, *, min_scale: int | None = None) -> FunctionDeployment:
    labels = {} if min_scale is None else {"com.openfaas.scale.min": str(min_scale)}
    return FunctionDeployment.parse({"service": name, "image": image, "labels": labels})
