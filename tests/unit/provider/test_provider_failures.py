"""The failures of issue 21, each reproduced: a follower that dies silently, netconf errors that reach the API
as 500s, an OOM kill between start and attach, and one bad adopted replica that stops the whole provider."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from netconf import NetlinkOperationError, NetnsBusyError, NetnsNotFoundError
from provider.errors import FunctionStartError, ProviderError
from tests.unit.provider.fakes import Behaviour, World, until

# -- 1. the Docker-event follower ------------------------------------------------------------------------------


async def test_the_event_follower_survives_a_netconf_error_and_keeps_restarting_replicas(world: World) -> None:
    await world.deploy("echo")
    # dockerd restarts; in the resync that follows, the replica's namespace cannot be attached (say it exited
    # between inspect and attach).
    world.network.failures.append(NetnsNotFoundError("network namespace /proc/1/ns/net cannot be opened"))
    world.runtime.end_streams()
    await until(lambda: world.runtime.following == 0, what="the stream to end")
    await until(lambda: world.runtime.following == 1, timeout=5, what="the follower to subscribe again")
    await until(lambda: world.serving("echo", 1), what="the function served again")
    [container] = world.runtime.of("echo")

    world.runtime.exit(container.id, 137)

    await until(lambda: container.starts == 2 and world.serving("echo", 1), what="the restart")


async def test_the_event_follower_is_restarted_after_an_unexpected_error(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")

    world.runtime.end_streams(RuntimeError("boom"))  # anything at all: a bug, a malformed event
    await until(lambda: world.runtime.following == 0, what="the stream to break")
    await until(lambda: world.runtime.following == 1, timeout=5, what="the follower to subscribe again")
    world.runtime.exit(container.id, 137)

    await until(lambda: container.starts == 2 and world.serving("echo", 1), what="the restart")


async def test_a_broken_follower_is_logged_shown_in_health_and_restarted(world: World) -> None:
    follower = world.core.follower
    assert follower.problem() is None

    with capture_logs() as logs:
        world.runtime.end_streams(RuntimeError("boom"))
        await until(lambda: follower.problem() is not None, what="the follower to report the failure")
        assert "boom" in (follower.problem() or "")
        await until(lambda: follower.problem() is None and world.runtime.following == 1, what="the follower back")

    assert any(e["event"] == "docker_events_failed" and "boom" in e["error"] for e in logs)


# -- 2. netconf errors at the provider's edge ------------------------------------------------------------------


async def test_a_full_subnet_refuses_the_deploy_with_a_409_naming_the_subnet_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, subnet="10.99.0.0/29")  # 5 addresses for containers
    await world.start()
    try:
        await world.deploy("small", labels={"com.openfaas.scale.min": "3"})

        with pytest.raises(ProviderError) as failure:
            await world.deploy("big", labels={"com.openfaas.scale.min": "3"})

        assert failure.value.status == 409
        assert "10.99.0.0/29" in str(failure.value)
        assert "PYFAASD_SUBNET" in str(failure.value)
        assert world.runtime.of("big") == []
        assert len(world.network.allocations) == 3
        assert world.hosts("big") == []
        assert [s.spec.service for s in world.orchestrator.list_functions("openfaas-fn")] == ["small"]
    finally:
        await world.core.close()


async def test_a_failing_attach_is_a_provider_error_naming_the_network_and_leaves_nothing(world: World) -> None:
    world.network.failures.append(NetlinkOperationError("create veth vpf0a630002", 17, "File exists"))

    with pytest.raises(ProviderError, match="veth") as failure:
        await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})

    assert failure.value.status == 500
    assert "network" in str(failure.value)
    assert world.runtime.containers == {}
    assert world.network.allocations == {}


# -- 3. OOM-killed between start and attach --------------------------------------------------------------------


async def test_a_replica_oom_killed_before_its_network_is_attached_is_reported_as_such(world: World) -> None:
    world.runtime.behaviours["fn:1"] = Behaviour(oom_at_start=True, output=("allocating",))

    with pytest.raises(FunctionStartError, match="killed for using more memory than its limit") as failure:
        await world.deploy("echo")

    assert failure.value.status == 422
    assert "did not become ready" in str(failure.value)
    assert world.runtime.containers == {}
    assert world.network.allocations == {}


async def test_an_oom_kill_before_attach_is_reported_even_when_docker_notices_the_exit_late(world: World) -> None:
    # Under load, dockerd may still say "running" for a moment after the process (and its namespace) is gone.
    world.runtime.behaviours["fn:1"] = Behaviour(oom_at_start=True, exit_seen_late=2)

    with pytest.raises(FunctionStartError, match="killed for using more memory than its limit"):
        await world.deploy("echo")
    assert world.runtime.containers == {}


async def test_a_restart_whose_replica_is_oom_killed_before_attach_is_logged_and_retried(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")
    world.runtime.behaviours["fn:1"] = Behaviour(oom_at_start=True)

    with capture_logs() as logs:
        world.runtime.exit(container.id, 1)
        await until(lambda: any(e["event"] == "replica_restart_failed" for e in logs), what="the failed restart")
        world.runtime.behaviours["fn:1"] = Behaviour()
        await until(lambda: world.serving("echo", 1), timeout=5, what="a later restart to succeed")

    failed = next(e for e in logs if e["event"] == "replica_restart_failed")
    assert "more memory than its limit" in failed["error"]


# -- 4. one bad adopted replica --------------------------------------------------------------------------------


async def test_an_adopted_replica_with_a_foreign_eth0_is_replaced_and_the_rest_served(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
    await world.deploy("other")
    bad, good = world.runtime.of("echo")
    world.network.foreign_eth0.add(bad.pid)  # say its bridge was deleted and something else made an eth0
    await world.core.close()
    world.network.attached.clear()

    with capture_logs() as logs:
        await world.restart()

    assert bad.id not in world.runtime.containers
    assert good.id in world.runtime.containers
    assert world.serving("echo", 2)
    assert world.serving("other", 1)
    assert any(e["event"] == "replica_adopt_failed" and e["container"] == bad.name for e in logs)


async def test_a_replica_restarted_from_outside_into_a_busy_namespace_is_replaced(world: World) -> None:
    await world.deploy("echo")
    [container] = world.runtime.of("echo")
    world.network.failures.append(NetnsBusyError("the network namespace already has an interface eth0"))

    world.runtime.restart_outside(container.id)

    await until(lambda: container.id not in world.runtime.containers and world.serving("echo", 1), what="a replacement")
