"""The provider's HTTP edge over the fakes: statuses and messages of the failures, and /healthz."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from provider.state import Timings
from tests.unit.provider.fakes import AUTH, CREDENTIALS, FAST, Behaviour, World, until

Call = Callable[..., Awaitable[ClientResponse]]


@pytest.fixture
async def make_client(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> AsyncIterator[Callable[..., Awaitable[tuple[World, TestClient[Any, Any]]]]]:
    worlds: list[World] = []

    async def make(subnet: str = "10.99.0.0/28", timings: Timings = FAST) -> tuple[World, TestClient[Any, Any]]:
        world = World(tmp_path / f"state{len(worlds)}", subnet=subnet, timings=timings)
        worlds.append(world)
        await world.start()
        app = world.app(CREDENTIALS)
        return world, await aiohttp_client(app)

    yield make
    for world in worlds:
        await world.core.close()


async def test_healthz_is_503_with_the_reason_while_docker_events_are_not_followed(make_client: Any) -> None:
    world, client = await make_client(timings=replace(FAST, events_retry_s=(0.5,)))
    assert (await client.get("/healthz")).status == 200

    world.runtime.end_streams(RuntimeError("boom"))
    await until(lambda: world.runtime.following == 0, what="the stream to break")

    response = await client.get("/healthz")
    assert response.status == 503
    assert "boom" in await response.text()
    await until(lambda: world.runtime.following == 1, timeout=5, what="the follower back")
    assert (await client.get("/healthz")).status == 200


async def test_a_deploy_into_a_full_subnet_is_a_409_naming_the_subnet(make_client: Any) -> None:
    world, client = await make_client(subnet="10.99.0.0/29")
    body = {"service": "big", "image": "fn:1", "labels": {"com.openfaas.scale.min": "6"}}

    response = await client.post("/system/functions", json=body, headers=AUTH)

    assert response.status == 409
    text = await response.text()
    assert "10.99.0.0/29" in text
    assert "internal error" not in text
    assert world.runtime.containers == {}


async def test_a_replica_oom_killed_at_start_is_a_422_saying_so(make_client: Any) -> None:
    world, client = await make_client()
    world.runtime.behaviours["fn:1"] = Behaviour(oom_at_start=True)

    response = await client.post("/system/functions", json={"service": "hog", "image": "fn:1"}, headers=AUTH)

    assert response.status == 422
    assert "killed for using more memory than its limit" in await response.text()
    assert world.runtime.containers == {}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/system/functions?namespace=nope", None),
        ("POST", "/system/functions", {"service": "fn", "image": "fn:1", "namespace": "nope"}),
        ("PUT", "/system/functions", {"service": "fn", "image": "fn:1", "namespace": "nope"}),
        ("DELETE", "/system/functions", {"functionName": "fn", "namespace": "nope"}),
        ("GET", "/system/function/fn?namespace=nope", None),
        ("POST", "/system/scale-function/fn", {"serviceName": "fn", "replicas": 1, "namespace": "nope"}),
        ("GET", "/system/logs?name=fn&namespace=nope", None),
        ("GET", "/system/secrets?namespace=nope", None),
        ("POST", "/system/secrets", {"name": "s", "value": "v", "namespace": "nope"}),
        ("PUT", "/system/secrets", {"name": "s", "value": "v", "namespace": "nope"}),
        ("DELETE", "/system/secrets", {"name": "s", "namespace": "nope"}),
    ],
)
async def test_every_function_and_secret_route_refuses_an_unknown_namespace_with_a_400(
    make_client: Any, method: str, path: str, body: dict[str, Any] | None
) -> None:
    world, client = await make_client()
    await world.deploy("fn")  # exists in openfaas-fn, so a 404 would mean the namespace was not checked

    response = await client.request(method, path, json=body, headers=AUTH)

    assert response.status == 400, await response.text()
    assert "namespace nope does not exist" in await response.text()
    assert world.runtime.of("fn", "nope") == []
