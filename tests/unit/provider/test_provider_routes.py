"""Routes (INTERFACES.md §8): checked at deploy and update, published to the routes file, freed on delete."""

from __future__ import annotations

import asyncio

import pytest

from netconf.routes import read_routes
from provider.errors import InvalidRequestError, RouteConflictError
from provider.models import FunctionDeployment
from provider.namespaces import Namespace
from tests.unit.provider.fakes import AUTH, Client, World

DOMAIN = "com.pyfaasd.domain"
PATH = "com.pyfaasd.path"


def routes(world: World) -> tuple[dict[str, str], dict[str, str]]:
    table = read_routes(world.config.routes_path)
    return dict(table.domains), dict(table.paths)


async def test_a_deploy_publishes_its_domains_and_path(world: World) -> None:
    await world.deploy("files", annotations={DOMAIN: "Files.Example.com, dl.example.org.", PATH: "/files/"})

    domains, paths = routes(world)
    assert domains == {"files.example.com": "files.openfaas-fn", "dl.example.org": "files.openfaas-fn"}
    assert paths == {"/files": "files.openfaas-fn"}


async def test_a_domain_another_function_holds_is_a_409_naming_it_and_creates_nothing(world: World) -> None:
    await world.deploy("files", annotations={DOMAIN: "files.example.com"})
    before = set(world.runtime.containers)

    with pytest.raises(
        RouteConflictError, match=r"files\.example\.com is already routed to function files\.openfaas-fn"
    ):
        await world.deploy("copy", annotations={DOMAIN: "other.example.com,FILES.example.com"})
    assert set(world.runtime.containers) == before
    assert routes(world)[0] == {"files.example.com": "files.openfaas-fn"}


@pytest.mark.parametrize("path", ["/files", "/files/docs"])
async def test_a_path_inside_or_equal_to_a_held_one_is_a_409(world: World, path: str) -> None:
    await world.deploy("files", annotations={PATH: "/files"})

    with pytest.raises(RouteConflictError, match=r"function files\.openfaas-fn"):
        await world.deploy("docs", annotations={PATH: path})


async def test_a_held_path_inside_the_new_one_is_a_409_too(world: World) -> None:
    await world.deploy("docs", annotations={PATH: "/files/docs"})

    with pytest.raises(RouteConflictError, match=r"path /files .*docs\.openfaas-fn \(it holds /files/docs\)"):
        await world.deploy("files", annotations={PATH: "/files"})


async def test_a_function_in_another_namespace_cannot_take_the_domain_either(world: World) -> None:
    world.namespaces.create(Namespace("dev", labels={"openfaas": "1"}))
    await world.deploy("files", annotations={DOMAIN: "files.example.com"})

    with pytest.raises(RouteConflictError, match=r"files\.openfaas-fn"):
        await world.deploy("files", namespace="dev", annotations={DOMAIN: "files.example.com"})


async def test_an_update_may_keep_its_own_routes_but_not_take_anothers(world: World) -> None:
    await world.deploy("files", annotations={DOMAIN: "files.example.com"})
    await world.deploy("blog", annotations={DOMAIN: "blog.example.com"})

    same = FunctionDeployment.parse({"service": "files", "image": "fn:2", "annotations": {DOMAIN: "files.example.com"}})
    await world.orchestrator.update(same)
    taking = FunctionDeployment.parse(
        {"service": "files", "image": "fn:2", "annotations": {DOMAIN: "blog.example.com"}}
    )
    with pytest.raises(RouteConflictError, match=r"blog\.openfaas-fn"):
        await world.orchestrator.update(taking)
    assert routes(world)[0] == {"files.example.com": "files.openfaas-fn", "blog.example.com": "blog.openfaas-fn"}


async def test_an_update_that_drops_a_route_frees_it(world: World) -> None:
    await world.deploy("files", annotations={DOMAIN: "files.example.com", PATH: "/files"})
    await world.orchestrator.update(FunctionDeployment.parse({"service": "files", "image": "fn:2"}))

    assert routes(world) == ({}, {})
    await world.deploy("other", annotations={DOMAIN: "files.example.com", PATH: "/files"})
    assert routes(world) == ({"files.example.com": "other.openfaas-fn"}, {"/files": "other.openfaas-fn"})


async def test_deleting_a_function_frees_its_routes(world: World) -> None:
    await world.deploy("files", annotations={DOMAIN: "files.example.com", PATH: "/files"})
    await world.orchestrator.delete("openfaas-fn", "files")

    assert routes(world) == ({}, {})
    await world.deploy("other", annotations={DOMAIN: "files.example.com", PATH: "/files"})


async def test_two_concurrent_deploys_of_one_domain_one_wins(world: World) -> None:
    results = await asyncio.gather(
        world.deploy("a", annotations={DOMAIN: "files.example.com"}),
        world.deploy("b", annotations={DOMAIN: "files.example.com"}),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["FunctionStatus", "RouteConflictError"]
    assert len(routes(world)[0]) == 1


async def test_a_function_scaled_to_zero_keeps_its_routes(world: World) -> None:
    await world.deploy("files", annotations={DOMAIN: "files.example.com"})
    await world.orchestrator.scale("openfaas-fn", "files", 0)

    assert routes(world)[0] == {"files.example.com": "files.openfaas-fn"}


async def test_routes_are_published_again_after_a_restart(world: World) -> None:
    await world.deploy("files", annotations={DOMAIN: "files.example.com"})
    world.config.routes_path.unlink()
    await world.restart()

    assert routes(world)[0] == {"files.example.com": "files.openfaas-fn"}


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({DOMAIN: "https://files.example.com"}, "is not a host name"),
        ({DOMAIN: "files.example.com:8443"}, "is not a host name"),
        ({DOMAIN: "*.example.com"}, "is not a host name"),
        ({DOMAIN: "10.0.0.1"}, "is an address"),
        ({DOMAIN: " , "}, "names no host name"),
        ({PATH: "files"}, "is not a path prefix"),
        ({PATH: "/"}, "is not a path prefix"),
        ({PATH: "/a/../b"}, "is not a path prefix"),
        ({PATH: "/files?x"}, "is not a path prefix"),
        ({PATH: "/function/x"}, "gateway's own /function"),
        ({PATH: "/system"}, "gateway's own /system"),
    ],
)
async def test_a_malformed_route_is_a_400_naming_it_and_creates_nothing(
    world: World, annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        await world.deploy("files", annotations=annotations)
    assert world.runtime.of("files") == []


async def test_the_api_answers_409_naming_the_holder(stack: tuple[World, Client]) -> None:
    _world, client = stack
    body = {"service": "files", "image": "fn:1", "annotations": {DOMAIN: "files.example.com"}}
    assert (await client.post("/system/functions", json=body, headers=AUTH)).status == 202
    response = await client.post("/system/functions", json={**body, "service": "copy"}, headers=AUTH)

    assert response.status == 409
    assert "files.example.com is already routed to function files.openfaas-fn" in await response.text()
    bad = await client.post(
        "/system/functions", json={**body, "service": "bad", "annotations": {PATH: "/ui"}}, headers=AUTH
    )
    assert bad.status == 400
    assert "com.pyfaasd.path" in await bad.text()
