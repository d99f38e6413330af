"""Functions with no ready replica: scale from zero, its deadline, 503 when it is off, and the lookup cache."""

from __future__ import annotations

import asyncio

from gateway.keys import SCALER
from tests.unit.gateway.conftest import FakeProvider, StartStack


def deployed(provider: FakeProvider, key: str, **fields: object) -> None:
    name, _, namespace = key.rpartition(".")
    provider.functions[key] = {"name": name, "namespace": namespace, "image": "img", **fields}


async def test_twenty_concurrent_requests_cause_one_scale_call_and_all_are_answered(start_stack: StartStack) -> None:
    provider = FakeProvider()
    stack = await start_stack(provider=provider, functions={})
    deployed(provider, "echo.openfaas-fn", labels={"com.openfaas.scale.min": "2"})
    ready_at: list[float] = []

    async def on_scale(name: str, namespace: str, replicas: int) -> None:
        async def become_ready() -> None:
            await asyncio.sleep(0.2)  # the replica's watchdog turns healthy, the provider adds it
            ready_at.append(asyncio.get_running_loop().time())
            stack.set_hosts({f"{name}.{namespace}": ["127.0.0.1"]})

        tasks.append(asyncio.create_task(become_ready()))

    tasks: list[asyncio.Task[None]] = []
    provider.on_scale = on_scale
    responses = await asyncio.gather(*(stack.client.get(f"/function/echo?i={i}") for i in range(20)))
    assert [r.status for r in responses] == [200] * 20
    assert sorted([(await r.json())["target"] for r in responses]) == sorted(f"/?i={i}" for i in range(20))
    scale_calls = provider.calls_to("POST", "/system/scale-function/")
    assert len(scale_calls) == 1
    _method, target, _headers, body = scale_calls[0]
    assert target == "/system/scale-function/echo?namespace=openfaas-fn"
    assert body == b'{"serviceName":"echo","namespace":"openfaas-fn","replicas":2}'  # the scale.min label
    assert len(provider.calls_to("GET", "/system/function/echo")) == 1  # one shared lookup too
    assert stack.app[SCALER].scale_calls == 1
    assert (await stack.client.get("/function/echo")).status == 200
    assert len(provider.calls_to("POST", "/system/scale-function/")) == 1


async def test_a_function_already_starting_is_waited_for_without_a_scale_call(start_stack: StartStack) -> None:
    provider = FakeProvider()
    stack = await start_stack(provider=provider, functions={})
    deployed(provider, "echo.dev", replicas=1)  # desired 1, nothing ready yet
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, stack.set_hosts, {"echo.dev": ["127.0.0.1"]})
    response = await stack.client.get("/function/echo.dev/x")
    assert response.status == 200
    assert provider.calls_to("POST", "/system/scale-function/") == []


async def test_no_replica_before_the_deadline_is_504(start_stack: StartStack) -> None:
    provider = FakeProvider()
    stack = await start_stack(provider=provider, functions={}, PYFAASD_SCALE_FROM_ZERO_TIMEOUT="300ms")
    deployed(provider, "echo.openfaas-fn")
    loop = asyncio.get_running_loop()
    started = loop.time()
    responses = await asyncio.gather(*(stack.client.get("/function/echo") for _ in range(3)))
    elapsed = loop.time() - started
    assert [r.status for r in responses] == [504] * 3
    assert all(r.headers["X-OpenFaaS-Internal"] == "gateway" for r in responses)
    assert "no ready replica after 0.3s" in await responses[0].text()
    assert 0.3 <= elapsed < 2
    assert len(provider.calls_to("POST", "/system/scale-function/")) == 1
    text = await (await stack.client.get("/metrics")).text()
    assert 'gateway_function_invocation_total{function_name="echo.openfaas-fn",code="504"} 3' in text


async def test_scale_from_zero_off_answers_503_and_caches_the_lookup(start_stack: StartStack) -> None:
    provider = FakeProvider()
    stack = await start_stack(provider=provider, functions={}, PYFAASD_SCALE_FROM_ZERO="false")
    deployed(provider, "echo.openfaas-fn")
    for _ in range(5):
        response = await stack.client.get("/function/echo")
        assert response.status == 503
        assert response.headers["X-OpenFaaS-Internal"] == "gateway"
        assert await response.text() == "No endpoints available for: echo.openfaas-fn.\n"
    assert len(provider.calls_to("GET", "/system/function/")) == 1
    assert provider.calls_to("POST", "/system/scale-function/") == []
    stack.set_hosts({"echo.openfaas-fn": ["127.0.0.1"]})  # a replica appears: served at once, cache or not
    assert (await stack.client.get("/function/echo")).status == 200


async def test_unknown_functions_cost_the_provider_one_lookup_per_half_second(start_stack: StartStack) -> None:
    provider = FakeProvider()
    stack = await start_stack(provider=provider, functions={}, PYFAASD_SCALE_FROM_ZERO="false")
    statuses = [(await stack.client.get("/function/ghost")).status for _ in range(20)]
    assert statuses == [404] * 20
    lookups = provider.calls_to("GET", "/system/function/ghost")
    assert len(lookups) == 1
    assert lookups[0][1] == "/system/function/ghost?namespace=openfaas-fn"
    # Deployed now, with no replica yet: the 404 does not stick for longer than the cache's half second.
    deployed(provider, "ghost.openfaas-fn")
    loop = asyncio.get_running_loop()
    deployed_at = loop.time()
    async with asyncio.timeout(1.5):
        while (response := await stack.client.get("/function/ghost")).status == 404:
            await asyncio.sleep(0.02)
    assert response.status == 503
    assert loop.time() - deployed_at <= 0.6
    assert len(provider.calls_to("GET", "/system/function/ghost")) == 2


async def test_a_provider_error_on_lookup_is_502_naming_the_function_not_the_internals(
    start_stack: StartStack,
) -> None:
    provider = FakeProvider()
    stack = await start_stack(provider=provider, functions={})
    provider.functions["broken.openfaas-fn"] = "not a status"  # type: ignore[assignment]
    response = await stack.client.get("/function/broken")
    assert response.status == 502
    text = await response.text()
    assert text.startswith("error finding function broken.openfaas-fn: the platform failed")
    assert "not a status" not in text  # the provider's own words stay in the log


async def test_unknown_namespaces_and_impossible_names_are_404(start_stack: StartStack) -> None:
    provider = FakeProvider()
    stack = await start_stack(provider=provider, functions={})
    response = await stack.client.get("/function/hello.no-such-namespace")
    assert response.status == 404
    long_name = "x" * 5000
    response = await stack.client.get(f"/function/{long_name}")
    assert response.status == 404
    assert len(await response.text()) < 300
    assert provider.calls_to("GET", f"/system/function/{long_name[:10]}") == []


async def test_a_request_while_the_function_goes_to_zero_wakes_it_once_it_is_down(start_stack: StartStack) -> None:
    # The autoscaler's scale to 0 took the replica out of the hosts file; the provider still retires it and
    # says desired 1 until it is done. The request waits, sees desired 0 then, and scales it up again.
    provider = FakeProvider()
    stack = await start_stack(provider=provider, functions={})
    deployed(provider, "echo.openfaas-fn", replicas=1)

    async def on_scale(name: str, namespace: str, replicas: int) -> None:
        if replicas > 0:
            stack.set_hosts({f"{name}.{namespace}": ["127.0.0.1"]})

    provider.on_scale = on_scale
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, provider.functions["echo.openfaas-fn"].__setitem__, "replicas", 0)
    response = await stack.client.get("/function/echo")
    assert response.status == 200
    scale_calls = provider.calls_to("POST", "/system/scale-function/")
    assert [c[3] for c in scale_calls] == [b'{"serviceName":"echo","namespace":"openfaas-fn","replicas":1}']


async def test_the_autoscaler_in_the_app_scales_idle_functions_to_zero_and_exports_its_decisions(
    start_stack: StartStack,
) -> None:
    provider = FakeProvider()
    stack = await start_stack(
        provider=provider,
        autoscale=True,
        PYFAASD_AUTOSCALE_INTERVAL="50ms",
        PYFAASD_SCALE_ZERO_DURATION="300ms",
    )
    deployed(provider, "echo.openfaas-fn", replicas=1, labels={"com.openfaas.scale.zero": "true"})
    deployed(provider, "steady.openfaas-fn", replicas=1, labels={"com.openfaas.scale.min": "1"})
    assert (await stack.client.get("/function/echo")).status == 200
    async with asyncio.timeout(5):
        while not provider.calls_to("POST", "/system/scale-function/echo"):
            await asyncio.sleep(0.02)
    [(_method, _target, _headers, body)] = provider.calls_to("POST", "/system/scale-function/")
    assert body == b'{"serviceName":"echo","namespace":"openfaas-fn","replicas":0}'
    text = await (await stack.client.get("/metrics")).text()
    assert 'gateway_service_target_load{function_name="echo.openfaas-fn",scaling_type="rps"} 5' in text
    assert 'gateway_service_desired_replicas{function_name="steady.openfaas-fn"} 1' in text
    assert 'gateway_function_invocation_inflight{function_name="echo.openfaas-fn"} 0' in text
