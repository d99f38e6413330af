"""/system/* and /healthz: basic auth, the pass-through with the gateway's credentials, and the added parts."""

from __future__ import annotations

import asyncio
import base64
import json
import platform

import pytest

from gateway.system import add_invocation_counts
from servicekit.version import __version__
from tests.helpers import free_port
from tests.unit.gateway.conftest import AUTH, CREDENTIALS, FakeProvider, StartStack


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(b"admin:wrong").decode(),
        "Basic " + base64.b64encode(b"root:s3cret-pw").decode(),
        "Bearer s3cret-pw",
        "Basic !!!",
    ],
    ids=["none", "wrong-password", "wrong-user", "bearer", "garbage"],
)
async def test_system_routes_refuse_bad_credentials(start_stack: StartStack, authorization: str | None) -> None:
    stack = await start_stack()
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("GET", "/system/functions"), ("POST", "/system/functions"), ("GET", "/system/info")):
        response = await stack.client.request(method, path, headers=headers)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="Restricted"'
        assert await response.text() == "invalid credentials\n"
    assert stack.provider.calls == []  # nothing reached the provider


async def test_the_provider_sees_the_gateways_credentials_not_the_clients(start_stack: StartStack) -> None:
    stack = await start_stack()
    # The client's credentials are right, but in another spelling: the provider must get the gateway's own.
    client_auth = "basic " + base64.b64encode(b"admin:s3cret-pw").decode()
    response = await stack.client.post(
        "/system/functions?x=1&y=%26", data=b'{"service":"f"}', headers={"Authorization": client_auth}
    )
    assert response.status == 201  # the provider's status, body and headers come back
    assert response.headers["X-Provider"] == "fake"
    assert await response.json() == {
        "method": "POST",
        "target": "/system/functions?x=1&y=%26",
        "body": '{"service":"f"}',
    }
    _method, _target, headers, body = stack.provider.calls[-1]
    assert headers["Authorization"] == CREDENTIALS.authorization
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert body == b'{"service":"f"}'


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_other_methods_and_paths_pass_through(start_stack: StartStack, method: str) -> None:
    stack = await start_stack()
    response = await stack.client.request(method, "/system/namespace/team-a", data=b"{}", headers=AUTH)
    assert response.status == 200
    assert (await response.json())["target"] == "/system/namespace/team-a"
    assert stack.provider.calls[-1][0] == method


async def test_scale_function_is_passed_through_unclamped(start_stack: StartStack) -> None:
    stack = await start_stack()
    stack.provider.functions["echo.openfaas-fn"] = {"name": "echo", "namespace": "openfaas-fn"}
    body = {"serviceName": "echo", "namespace": "openfaas-fn", "replicas": 0}
    response = await stack.client.post("/system/scale-function/echo", json=body, headers=AUTH)
    assert response.status == 200
    assert json.loads(stack.provider.calls[-1][3]) == body  # 0 stays 0 (OpenFaaS would make it 1)


async def test_list_functions_fills_invocation_count_from_the_gateways_counters(start_stack: StartStack) -> None:
    stack = await start_stack()
    stack.provider.functions = {
        "echo.openfaas-fn": {
            "name": "echo",
            "image": "img",
            "namespace": "openfaas-fn",
            "labels": {"a": "ü"},
            "replicas": 1,
            "availableReplicas": 1,
            "createdAt": "2024-01-01T00:00:00Z",
        },
        "idle.openfaas-fn": {"name": "idle", "image": "img", "createdAt": "0001-01-01T00:00:00Z"},
    }
    for _ in range(3):
        assert (await stack.client.get("/function/echo")).status == 200
    response = await stack.client.get("/system/functions", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    echo, idle = json.loads(await response.read())
    assert list(echo) == [
        "name", "image", "namespace", "labels", "invocationCount", "replicas", "availableReplicas", "createdAt"
    ]  # fmt: skip
    assert echo["invocationCount"] == 3
    assert echo["labels"] == {"a": "ü"}
    assert "invocationCount" not in idle  # omitted when 0, like Go's omitempty


async def test_list_functions_without_counts_is_the_providers_bytes(start_stack: StartStack) -> None:
    stack = await start_stack()
    stack.provider.functions = {"idle.openfaas-fn": {"name": "idle", "image": "img"}}
    response = await stack.client.get("/system/functions", headers=AUTH)
    assert await response.read() == json.dumps([{"name": "idle", "image": "img"}]).encode()


def test_add_invocation_counts_uses_the_namespace_and_replaces_stale_counts() -> None:
    functions = [
        {"name": "a", "namespace": "dev", "invocationCount": 9},
        {"name": "a", "invocationCount": 2},
        {"name": "b", "usage": {}},
    ]
    counts = {"a.dev": 5.0, "b.openfaas-fn": 1.5}
    assert add_invocation_counts(functions, counts, "openfaas-fn")
    assert functions == [
        {"name": "a", "namespace": "dev", "invocationCount": 5},
        {"name": "a"},
        {"name": "b", "invocationCount": 1.5, "usage": {}},
    ]
    assert not add_invocation_counts(functions, counts, "openfaas-fn")


async def test_info_wraps_the_providers_info(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.get("/system/info", headers=AUTH)
    assert response.status == 200
    info = await response.json()
    assert info["provider"] == {
        "provider": "pyfaasd",
        "orchestration": "docker",
        "version": {"sha": "abc123", "release": "0.1.0"},
    }
    assert info["version"]["release"] == __version__
    assert isinstance(info["version"]["sha"], str)
    assert info["arch"] == platform.machine()


async def test_logs_stream_line_by_line(start_stack: StartStack) -> None:
    provider = FakeProvider(logs=['{"text":"one"}', '{"text":"two"}'])
    stack = await start_stack(provider=provider)
    response = await stack.client.get("/system/logs?name=echo&follow=true&tail=-1", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    async with asyncio.timeout(5):  # the provider sends the second line only after we saw the first
        assert await response.content.readline() == b'{"text":"one"}\n'
    provider.log_gate.set()
    assert await response.content.read() == b'{"text":"two"}\n'
    assert provider.calls[-1][1] == "/system/logs?name=echo&follow=true&tail=-1"


@pytest.mark.parametrize(("provider_status", "status"), [(404, 501), (501, 501), (422, 422)])
async def test_log_statuses(start_stack: StartStack, provider_status: int, status: int) -> None:
    stack = await start_stack(provider=FakeProvider(logs_status=provider_status))
    response = await stack.client.get("/system/logs?name=echo", headers=AUTH)
    assert response.status == status
    if status == 501:
        assert response.headers["X-OpenFaaS-Internal"] == "gateway"


async def test_healthz_is_the_providers_and_needs_no_credentials(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.get("/healthz")
    assert (response.status, await response.text()) == (200, "OK")
    assert stack.provider.calls[-1][:2] == ("GET", "/healthz")
    assert stack.provider.calls[-1][2]["Authorization"] == CREDENTIALS.authorization


async def test_an_unreachable_provider_is_502_with_a_message(start_stack: StartStack) -> None:
    stack = await start_stack(PYFAASD_PROVIDER_URL=f"http://127.0.0.1:{free_port()}")
    for path in ("/system/functions", "/system/info", "/system/logs?name=x", "/healthz"):
        response = await stack.client.get(path, headers=AUTH)
        assert response.status == 502
        assert response.headers["X-OpenFaaS-Internal"] == "gateway"
        assert "cannot reach the provider" in await response.text()
    # A function that is not in the hosts file cannot be looked up either.
    response = await stack.client.get("/function/unknown")
    assert response.status == 502
    assert "cannot reach the provider" in await response.text()


async def test_metrics_are_prometheus_text_without_auth(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await response.text()
    for name in (
        "gateway_function_invocation_total",
        "gateway_functions_seconds",
        "gateway_function_invocation_started",
        "gateway_service_count",
    ):
        assert f"# TYPE {name} " in text
