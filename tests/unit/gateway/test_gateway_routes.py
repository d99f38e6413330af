"""Functions at their own domain or short path (INTERFACES.md §8): matching, prefix stripping, forwarded headers,
precedence over the gateway's own paths, the same proxy path as /function/ (metrics, scale from zero)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.keys import ROUTES
from gateway.routes import RouteMatch, Routes, host_name
from netconf.routes import Route, RouteKind, write_routes
from tests.unit.gateway.conftest import FakeProvider, StartStack

FILES = "files.example.com"


def set_routes(state_dir: Path, *routes: tuple[str, str, str]) -> None:
    """Write the routes file as the provider does: ``(kind, value, "name.namespace")`` each."""
    write_routes(state_dir / "routes", [Route(RouteKind(kind), value, function) for kind, value, function in routes])


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("files.example.com", FILES),
        ("Files.Example.COM:8443", FILES),
        ("files.example.com.", FILES),
        ("[::1]:80", "[::1]:80"),
    ],
)
def test_host_name_drops_port_case_and_trailing_dot(host: str, name: str) -> None:
    assert host_name(host) == name


def test_path_routes_match_whole_segments(tmp_path: Path) -> None:
    set_routes(tmp_path, ("path", "/files", "files.openfaas-fn"), ("path", "/files/docs", "docs.openfaas-fn"))
    routes = Routes(tmp_path / "routes")

    assert routes.by_path("/files") == RouteMatch("files.openfaas-fn", "/", "/files")
    assert routes.by_path("/files/") == RouteMatch("files.openfaas-fn", "/", "/files")
    assert routes.by_path("/files/a/b?x=1") == RouteMatch("files.openfaas-fn", "/a/b?x=1", "/files")
    assert routes.by_path("/files?x=1") == RouteMatch("files.openfaas-fn", "/?x=1", "/files")
    # The provider refuses overlapping paths; of two in the file anyway, the writer keeps the first in order.
    assert routes.by_path("/files/docs/readme.md") == RouteMatch("files.openfaas-fn", "/docs/readme.md", "/files")
    assert routes.by_path("/filesx") is None
    assert routes.by_path("/other") is None


async def test_a_routed_domain_reaches_the_function_at_its_own_paths(start_stack: StartStack, tmp_path: Path) -> None:
    set_routes(tmp_path, ("domain", FILES, "echo.openfaas-fn"))
    stack = await start_stack()

    root = await stack.client.get("/", headers={"Host": FILES})
    assert root.status == 200
    seen = await root.json()
    assert seen["target"] == "/"
    download = await (await stack.client.get("/download/a%20b.zip?v=2", headers={"Host": f"{FILES}:8080"})).json()
    assert download["target"] == "/download/a%20b.zip?v=2"
    assert download["headers"]["X-Forwarded-Host"] == f"{FILES}:8080"
    assert download["headers"]["X-Forwarded-Proto"] == "http"
    assert "X-Forwarded-Prefix" not in download["headers"]
    assert download["headers"]["X-Call-Id"]


async def test_a_routed_domain_owns_every_path_even_the_gateways_own(start_stack: StartStack, tmp_path: Path) -> None:
    set_routes(tmp_path, ("domain", FILES, "echo.openfaas-fn"))
    stack = await start_stack()

    for path in ("/system/functions", "/function/other/x", "/healthz", "/metrics", "/ui/", "/_/health"):
        response = await stack.client.post(path, data=b"body", headers={"Host": FILES})
        assert response.status == 200, path
        seen = await response.json()
        assert (seen["target"], seen["body"]) == (path, "body")
    assert stack.provider.calls == []  # none of it reached the provider


async def test_other_hosts_keep_the_gateways_paths(start_stack: StartStack, tmp_path: Path) -> None:
    set_routes(tmp_path, ("domain", FILES, "echo.openfaas-fn"))
    stack = await start_stack()

    assert (await stack.client.get("/_/health")).status == 200
    assert (await stack.client.get("/_/health", headers={"Host": "other.example.com"})).status == 200
    assert (await (await stack.client.get("/function/echo/x")).json())["target"] == "/x"
    assert (await stack.client.get("/download/x", headers={"Host": "other.example.com"})).status == 404


async def test_a_path_route_strips_its_prefix_and_says_so(start_stack: StartStack, tmp_path: Path) -> None:
    set_routes(tmp_path, ("path", "/files", "echo.openfaas-fn"))
    stack = await start_stack()

    seen = await (await stack.client.get("/files/download/x?y=1")).json()
    assert seen["target"] == "/download/x?y=1"
    assert seen["headers"]["X-Forwarded-Prefix"] == "/files"
    assert seen["headers"]["X-Forwarded-Proto"] == "http"
    assert (await (await stack.client.get("/files")).json())["target"] == "/"
    outer = await stack.client.get("/files/", headers={"X-Forwarded-Prefix": "/edge/", "X-Forwarded-Proto": "https"})
    outer_seen = await outer.json()
    assert outer_seen["headers"]["X-Forwarded-Prefix"] == "/edge/files"  # behind an outer proxy's prefix
    assert outer_seen["headers"]["X-Forwarded-Proto"] == "https"  # the outer proxy's word is kept
    assert (await stack.client.get("/filesx")).status == 404
    assert (await (await stack.client.get("/function/echo/a")).json())["headers"]["X-Forwarded-Prefix"] == (
        "/function/echo"
    )


async def test_routed_requests_count_in_the_functions_metrics(start_stack: StartStack, tmp_path: Path) -> None:
    set_routes(tmp_path, ("domain", FILES, "echo.openfaas-fn"), ("path", "/files", "echo.openfaas-fn"))
    stack = await start_stack()

    await stack.client.get("/", headers={"Host": FILES})
    await stack.client.get("/files/x")
    await stack.client.get("/function/echo")
    text = await (await stack.client.get("/metrics")).text()
    assert 'gateway_function_invocation_total{function_name="echo.openfaas-fn",code="200"} 3' in text


async def test_a_routed_function_at_zero_is_scaled_up_by_the_request(start_stack: StartStack, tmp_path: Path) -> None:
    set_routes(tmp_path, ("domain", FILES, "echo.dev"))
    provider = FakeProvider()
    provider.functions["echo.dev"] = {"name": "echo", "namespace": "dev", "image": "img", "replicas": 0}
    stack = await start_stack(provider=provider, functions={})

    async def on_scale(name: str, namespace: str, replicas: int) -> None:
        asyncio.get_running_loop().call_later(0.1, stack.set_hosts, {f"{name}.{namespace}": ["127.0.0.1"]})

    provider.on_scale = on_scale
    response = await stack.client.get("/page", headers={"Host": FILES})
    assert response.status == 200
    assert (await response.json())["target"] == "/page"
    assert len(provider.calls_to("POST", "/system/scale-function/echo")) == 1


async def test_the_routes_file_is_followed(start_stack: StartStack, tmp_path: Path) -> None:
    stack = await start_stack()
    assert (await stack.client.get("/", headers={"Host": FILES})).status == 404

    set_routes(tmp_path, ("domain", FILES, "echo.openfaas-fn"))
    stack.app[ROUTES].refresh(force=True)
    assert (await stack.client.get("/", headers={"Host": FILES})).status == 200
    set_routes(tmp_path)  # the function was deleted: its route is free again
    stack.app[ROUTES].refresh(force=True)
    assert (await stack.client.get("/", headers={"Host": FILES})).status == 404


async def test_a_domain_routed_to_an_unknown_function_is_a_404_naming_it(
    start_stack: StartStack, tmp_path: Path
) -> None:
    set_routes(tmp_path, ("domain", FILES, "gone.openfaas-fn"))
    stack = await start_stack()

    response = await stack.client.get("/", headers={"Host": FILES})
    assert response.status == 404
    assert "gone" in await response.text()
