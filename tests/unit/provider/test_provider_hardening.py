"""Faults found by trying the provider as a hostile user (issue 20): each failed before its fix."""

from __future__ import annotations

import io
from typing import Any

import pytest

from tests.unit.provider.fakes import AUTH, Client, World


async def test_a_secret_a_function_uses_cannot_be_deleted(stack: tuple[World, Client]) -> None:
    world, client = stack
    assert (await client.post("/system/secrets", json={"name": "key", "value": "v"}, headers=AUTH)).status == 201
    spec = {"service": "user", "image": "fn:1", "secrets": ["key"]}
    assert (await client.post("/system/functions", json=spec, headers=AUTH)).status == 202
    refused = await client.delete("/system/secrets", json={"name": "key"}, headers=AUTH)
    assert refused.status == 409
    assert "user.openfaas-fn" in await refused.text()
    assert world.secrets.exists("openfaas-fn", "key")
    assert (await client.delete("/system/functions", json={"functionName": "user"}, headers=AUTH)).status == 200
    assert (await client.delete("/system/secrets", json={"name": "key"}, headers=AUTH)).status == 200
    assert (await client.delete("/system/secrets", json={"name": "key"}, headers=AUTH)).status == 404


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_a_directory_where_a_secret_file_should_be_is_repaired_not_a_500(
    stack: tuple[World, Client], method: str
) -> None:
    world, client = stack
    damaged = world.secrets.path("openfaas-fn", "key")
    damaged.mkdir(parents=True)  # what Docker leaves when a mounted secret file went missing
    reply = await client.request(method, "/system/secrets", json={"name": "key", "value": "fixed"}, headers=AUTH)
    assert reply.status in (200, 201), await reply.text()
    assert damaged.is_file()
    assert damaged.read_text() == "fixed"


async def test_a_body_over_the_limit_is_413(stack: tuple[World, Client]) -> None:
    _, client = stack
    big = io.BytesIO(b'{"service": "' + b"x" * (10 << 20) + b'"}')
    reply = await client.post("/system/functions", data=big, headers={**AUTH, "Content-Type": "application/json"})
    assert reply.status == 413
    assert "over the limit" in await reply.text()


@pytest.mark.parametrize("key", ["bad key!", "-dash", "a" * 64, "Bad_Prefix/x", "trailing.", "x/"])
async def test_label_keys_are_checked_as_kubernetes_does(stack: tuple[World, Client], key: str) -> None:
    world, client = stack
    reply = await client.post(
        "/system/functions", json={"service": "fn", "image": "fn:1", "labels": {key: "v"}}, headers=AUTH
    )
    assert reply.status == 400
    assert "not a valid label key" in await reply.text()
    assert world.runtime.of("fn") == []


async def test_good_label_keys_pass(stack: tuple[World, Client]) -> None:
    _, client = stack
    labels = {"com.openfaas.scale.min": "1", "example.com/team": "a", "app": "x", "a_b-c.d": "y"}
    spec = {"service": "fn", "image": "fn:1", "labels": labels}
    assert (await client.post("/system/functions", json=spec, headers=AUTH)).status == 202


async def test_removing_a_namespaces_last_function_leaves_no_empty_directory(stack: tuple[World, Client]) -> None:
    world, client = stack
    assert (await client.post("/system/namespace/", json={"name": "team"}, headers=AUTH)).status == 201
    spec = {"service": "fn", "image": "fn:1", "namespace": "team"}
    assert (await client.post("/system/functions", json=spec, headers=AUTH)).status == 202
    assert (world.config.state_dir / "replicas" / "team").is_dir()
    gone = {"functionName": "fn", "namespace": "team"}
    assert (await client.delete("/system/functions", json=gone, headers=AUTH)).status == 200
    assert (await client.delete("/system/namespace/team", headers=AUTH)).status == 202
    assert not (world.config.state_dir / "replicas" / "team").exists()


def test_operator_defaults_apply_to_functions_that_set_none_and_are_recorded_apart() -> None:
    from provider.config import ProviderConfig
    from provider.container_spec import ReplicaSpec, container_config
    from provider.models import FunctionDeployment

    config = ProviderConfig(default_memory_bytes=256 << 20, default_nano_cpus=500_000_000, default_read_only_root=True)

    def host(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        spec = FunctionDeployment.parse({"service": "fn", "image": "fn:1", **body})
        made = container_config(ReplicaSpec(spec, 0, "g" * 32, "2026-01-01T00:00:00Z"), config, {})
        return made["HostConfig"], made["Labels"]

    bare, labels = host({})
    assert (bare["Memory"], bare["NanoCpus"], bare["ReadonlyRootfs"]) == (256 << 20, 500_000_000, True)
    assert "/tmp" in bare["Tmpfs"]
    assert labels["com.pyfaasd.defaults"] == f"memory={256 << 20},nanocpus=500000000,read-only-root"
    own, labels = host({"limits": {"memory": "64Mi"}, "annotations": {"com.pyfaasd.writable-root": "true"}})
    assert (own["Memory"], own["NanoCpus"], "ReadonlyRootfs" in own) == (64 << 20, 500_000_000, False)
    assert labels["com.pyfaasd.defaults"] == "nanocpus=500000000"
    _, labels = host({"limits": {"memory": "64Mi", "cpu": "1"}, "readOnlyRootFilesystem": True})
    assert "com.pyfaasd.defaults" not in labels
