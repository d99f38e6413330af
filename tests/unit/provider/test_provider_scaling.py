"""What the autoscaler relies on in the provider: scale down drains, usage, the scale labels checked at deploy,
and the certifier's points (memory under Docker's minimum, faas_function)."""

from __future__ import annotations

import asyncio
import re
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from provider.config import ProviderConfig
from provider.container_spec import ReplicaSpec, container_config
from provider.errors import InvalidRequestError
from provider.models import FunctionDeployment
from provider.quantity import MIN_MEMORY_BYTES
from tests.unit.provider.fakes import AUTH, Client, World, until


def replica_ips(world: World, name: str) -> dict[int, IPv4Address]:
    fn = world.core.state.get("openfaas-fn", name)
    return {r.container.replica: r.ip for r in fn.replicas.values() if r.ip is not None}


async def test_scale_down_takes_the_replica_out_first_and_stops_it_once_its_requests_finished(world: World) -> None:
    await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
    ips = replica_ips(world, "echo")
    leaving = ips[1]
    world.probe.in_flight_at[leaving] = 2.0  # two requests still being served there
    scaling = asyncio.create_task(world.orchestrator.scale("openfaas-fn", "echo", 1))
    await until(lambda: world.hosts("echo") == [str(ips[0])], what="the replica to leave the hosts file")
    await asyncio.sleep(0.1)
    assert not scaling.done()
    assert len(world.runtime.of("echo", running=True)) == 2  # still serving its requests
    world.probe.in_flight_at[leaving] = 0.0
    status = await asyncio.wait_for(scaling, 2)
    assert (status.replicas, status.available_replicas) == (1, 1)
    assert len(world.runtime.of("echo", running=True)) == 1
    assert (leaving, 8081) in world.probe.in_flight_asks  # the watchdog's metrics port


async def test_the_drain_is_bounded(tmp_path: Path) -> None:
    world = World(tmp_path, drain_timeout_s=0.2)
    await world.start()
    try:
        await world.deploy("echo", labels={"com.openfaas.scale.min": "2"})
        world.probe.in_flight_at[replica_ips(world, "echo")[1]] = 1.0  # a request that never ends
        loop = asyncio.get_running_loop()
        started = loop.time()
        await world.orchestrator.scale("openfaas-fn", "echo", 1)
        assert 0.2 <= loop.time() - started < 2
        assert len(world.runtime.of("echo", running=True)) == 1
    finally:
        await world.core.close()


async def test_a_replica_that_does_not_report_is_not_waited_for_and_metrics_port_0_is_not_asked(
    world: World,
) -> None:
    await world.deploy("quiet", labels={"com.openfaas.scale.min": "2"})
    await asyncio.wait_for(world.orchestrator.scale("openfaas-fn", "quiet", 1), 1)
    assert world.probe.in_flight_asks  # asked, got no answer (None), did not wait
    world.probe.in_flight_asks.clear()
    await world.deploy("off", labels={"com.openfaas.scale.min": "2"}, envVars={"metrics_port": "0"})
    await world.orchestrator.scale("openfaas-fn", "off", 0)
    assert world.probe.in_flight_asks == []


async def test_usage_sums_the_running_replicas(stack: tuple[World, Client]) -> None:
    world, client = stack
    await world.deploy("echo", labels={"com.openfaas.scale.min": "3"})
    world.runtime.cpu_millis = 120.0
    plain = await (await client.get("/system/function/echo", headers=AUTH)).json()
    assert "usage" not in plain
    described = await (await client.get("/system/function/echo?usage=1", headers=AUTH)).json()
    assert described["usage"] == {"cpu": 360.0, "totalMemoryBytes": 3 * (4 << 20)}


@pytest.mark.parametrize(
    ("labels", "named"),
    [
        ({"com.openfaas.scale.type": "queue"}, "com.openfaas.scale.type"),
        ({"com.openfaas.scale.target": "-5"}, "com.openfaas.scale.target"),
        ({"com.openfaas.scale.target-proportion": "x"}, "com.openfaas.scale.target-proportion"),
        ({"com.openfaas.scale.zero": "maybe"}, "com.openfaas.scale.zero"),
        ({"com.openfaas.scale.zero-duration": "soon"}, "com.openfaas.scale.zero-duration"),
        ({"com.openfaas.scale.min": "3", "com.openfaas.scale.max": "2"}, "com.openfaas.scale.max"),
        ({"com.openfaas.scale.max": "0"}, "com.openfaas.scale.max"),
    ],
)
async def test_bad_scale_labels_are_refused_naming_the_label(world: World, labels: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidRequestError, match=re.escape(f"labels.{named}:")):
        await world.deploy("echo", labels=labels)
    assert world.runtime.containers == {}


async def test_good_scale_labels_deploy(world: World) -> None:
    labels = {
        "com.openfaas.scale.min": "1",
        "com.openfaas.scale.max": "4",
        "com.openfaas.scale.type": "capacity",
        "com.openfaas.scale.target": "10",
        "com.openfaas.scale.target-proportion": "0.7",
        "com.openfaas.scale.zero": "true",
        "com.openfaas.scale.zero-duration": "2m",
    }
    status = await world.deploy("echo", labels=labels)
    assert status.to_json()["labels"] == {"faas_function": "echo", **labels}


def test_a_memory_limit_under_dockers_minimum_is_raised_to_it_and_reported_as_sent() -> None:
    spec = FunctionDeployment.parse(
        {"service": "fn", "image": "img", "limits": {"memory": "5Mi", "cpu": "100m"}, "requests": {"memory": "1Mi"}}
    )
    host = container_config(ReplicaSpec(spec, 0, "g", ""), ProviderConfig(), {}, [])["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == MIN_MEMORY_BYTES
    assert host["MemoryReservation"] == MIN_MEMORY_BYTES
    assert spec.to_json()["limits"] == {"memory": "5Mi", "cpu": "100m"}
    with pytest.raises(InvalidRequestError, match=r"limits\.memory: '0' must be more than 0"):
        FunctionDeployment.parse({"service": "fn", "image": "img", "limits": {"memory": "0"}})
