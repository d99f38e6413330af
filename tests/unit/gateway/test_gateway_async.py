"""``/async-function/`` end to end inside one gateway: real replicas and a real callback receiver on loopback,
the real SQLite queue in the test's state dir, the fake provider for lookups and annotations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from gateway.keys import ASYNC_ROLE
from tests.unit.gateway.conftest import AUTH, FakeProvider, Stack, StartStack


@dataclass
class Receiver:
    """A callback receiver: records every POST; ``delay`` makes it slow, ``status`` picks its answer."""

    url: str = ""
    got: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    status: int = 200
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        async def receive(request: web.Request) -> web.Response:
            body = await request.read()
            if self.delay:
                await asyncio.sleep(self.delay)
            self.got.append(
                {"path": request.path, "headers": dict(request.headers), "body": body, "at": time.monotonic()}
            )
            self.arrived.set()
            return web.Response(status=self.status)

        app = web.Application()
        app.router.add_post("/{tail:.*}", receive)
        return app

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.got) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.got


MakeReceiver = Callable[..., Awaitable[Receiver]]


@pytest.fixture
def receiver(aiohttp_server: AiohttpServer) -> MakeReceiver:
    async def make(**fields: Any) -> Receiver:
        made = Receiver(**fields)
        server = await aiohttp_server(made.app())
        made.url = f"http://127.0.0.1:{server.port}"
        return made

    return make


def deploy(provider: FakeProvider, key: str = "echo.openfaas-fn", **annotations: str) -> None:
    name, _, namespace = key.rpartition(".")
    provider.functions[key] = {"name": name, "namespace": namespace, "image": "img", "annotations": annotations}


async def status_of(stack: Stack, call_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/system/async/{call_id}", headers=AUTH)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def until_status(stack: Stack, call_id: str, wanted: str, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while (answer := await status_of(stack, call_id))["status"] != wanted:
            await asyncio.sleep(0.02)
    return answer


async def started(stack: Stack) -> Stack:
    await asyncio.wait_for(stack.app[ASYNC_ROLE].holding.wait(), 5)
    return stack


async def test_a_call_is_queued_invoked_and_called_back_with_the_openfaas_headers(
    start_stack: StartStack, receiver: MakeReceiver
) -> None:
    provider = FakeProvider()
    deploy(provider)
    stack = await started(await start_stack(provider=provider))
    back = await receiver()
    response = await stack.client.post(
        "/async-function/echo.openfaas-fn/sub/path?x=1&y=%26",
        data=b"payload",
        headers={"X-Callback-Url": f"{back.url}/done", "X-Call-Id": "call-1", "X-Custom": "kept"},
    )
    assert response.status == 202
    assert await response.read() == b""
    assert response.headers["X-Call-Id"] == "call-1"
    assert int(response.headers["X-Start-Time"]) > 0

    [callback] = await back.wait_for(1)
    headers = callback["headers"]
    assert callback["path"] == "/done"
    assert headers["X-Call-Id"] == "call-1"
    assert headers["X-Function-Status"] == "200"
    assert headers["X-Function-Name"] == "echo.openfaas-fn"
    assert float(headers["X-Duration-Seconds"]) > 0
    assert headers["X-Replica"] == "127.0.0.1"  # the function's own headers come along
    assert headers["Content-Type"].startswith("application/json")
    seen = stack.upstream.seen[-1]
    assert (seen["method"], seen["target"], seen["body"]) == ("POST", "/sub/path?x=1&y=%26", "payload")
    assert seen["headers"]["X-Call-Id"] == "call-1"
    assert seen["headers"]["X-Custom"] == "kept"
    assert seen["headers"]["X-Forwarded-Prefix"] == "/async-function/echo.openfaas-fn"
    assert "X-Start-Time" in seen["headers"]
    assert await until_status(stack, "call-1", "done") == {"status": "done", "attempts": 1, "functionStatus": 200}

    metrics = await (await stack.client.get("/metrics")).text()
    assert 'gateway_async_accepted_total{function_name="echo.openfaas-fn"} 1' in metrics
    assert 'gateway_async_finished_total{function_name="echo.openfaas-fn",status="done"} 1' in metrics
    assert 'gateway_function_invocation_total{function_name="echo.openfaas-fn",code="200"} 1' in metrics
    assert 'gateway_async_callbacks_total{function_name="echo.openfaas-fn",result="delivered"} 1' in metrics


async def test_fifty_calls_make_fifty_callbacks(start_stack: StartStack, receiver: MakeReceiver) -> None:
    provider = FakeProvider()
    deploy(provider)
    stack = await started(await start_stack(provider=provider))
    back = await receiver()
    ids = [f"c{i}" for i in range(50)]
    responses = await asyncio.gather(
        *(
            stack.client.post(
                "/async-function/echo", data=i.encode(), headers={"X-Callback-Url": back.url, "X-Call-Id": i}
            )
            for i in ids
        )
    )
    assert [r.status for r in responses] == [202] * 50
    got = await back.wait_for(50)
    assert sorted(c["headers"]["X-Call-Id"] for c in got) == sorted(ids)
    assert {c["headers"]["X-Function-Status"] for c in got} == {"200"}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "not an absolute http"),
        ("/relative/path", "not an absolute http"),
        ("http://", "names no host"),
        ("http://host:99999/", "not a URL"),
        ("http://a b/", "blanks"),
    ],
)
async def test_a_bad_callback_url_is_400_and_stores_nothing(start_stack: StartStack, url: str, reason: str) -> None:
    provider = FakeProvider()
    deploy(provider)
    stack = await started(await start_stack(provider=provider))
    response = await stack.client.post(
        "/async-function/echo", data=b"x", headers={"X-Callback-Url": url, "X-Call-Id": "bad"}
    )
    assert response.status == 400
    text = await response.text()
    assert text.startswith("X-Callback-Url: ")
    assert reason in text
    assert (await stack.client.get("/system/async/bad", headers=AUTH)).status == 404


async def test_refusals_unknown_function_body_too_large_wrong_method(start_stack: StartStack) -> None:
    provider = FakeProvider()
    deploy(provider)
    # (The call accepted at zero below waits for a replica that never comes: the shutdown drains it, up to the
    # scale-from-zero timeout, kept short.)
    stack = await started(
        await start_stack(
            provider=provider, functions={}, PYFAASD_ASYNC_MAX_BODY_BYTES="10", PYFAASD_SCALE_FROM_ZERO_TIMEOUT="1s"
        )
    )
    unknown = await stack.client.post("/async-function/ghost", data=b"x", headers={"X-Call-Id": "g"})
    assert unknown.status == 404
    assert "ghost.openfaas-fn" in await unknown.text()
    large = await stack.client.post("/async-function/echo", data=b"x" * 11, headers={"X-Call-Id": "big"})
    assert large.status == 413
    wrong = await stack.client.get("/async-function/echo")
    assert (wrong.status, wrong.headers["Allow"]) == (405, "POST")
    assert (await stack.client.post("/async-function/")).status == 400
    for call_id in ("g", "big"):
        assert (await stack.client.get(f"/system/async/{call_id}", headers=AUTH)).status == 404
    assert (await stack.client.get("/system/async/g")).status == 401  # basic auth like every /system route
    # A deployed function at zero replicas is accepted: the dispatcher scales it from zero.
    assert (await stack.client.post("/async-function/echo", data=b"x" * 10)).status == 202


async def test_a_500_is_retried_by_the_annotations_then_succeeds(
    start_stack: StartStack, receiver: MakeReceiver
) -> None:
    provider = FakeProvider()
    deploy(provider, **{"com.openfaas.retry.attempts": "3", "com.openfaas.retry.min_wait": "100ms"})
    stack = await started(await start_stack(provider=provider))
    back = await receiver()
    response = await stack.client.post(
        "/async-function/echo/flaky/a?fail=2", headers={"X-Callback-Url": back.url, "X-Call-Id": "r1"}
    )
    assert response.status == 202
    [callback] = await back.wait_for(1)
    assert callback["headers"]["X-Function-Status"] == "200"
    assert callback["body"] == b"success on call 3"
    assert await status_of(stack, "r1") == {"status": "done", "attempts": 3, "functionStatus": 200}
    metrics = await (await stack.client.get("/metrics")).text()
    assert 'gateway_async_retries_total{function_name="echo.openfaas-fn"} 2' in metrics

    # Without the annotation: one attempt, and the failure is called back.
    deploy(provider, "other.openfaas-fn")
    stack.set_hosts({"echo.openfaas-fn": ["127.0.0.1"], "other.openfaas-fn": ["127.0.0.1"]})
    await stack.client.post(
        "/async-function/other/flaky/b?fail=2", headers={"X-Callback-Url": back.url, "X-Call-Id": "r2"}
    )
    got = await back.wait_for(2)
    assert got[1]["headers"]["X-Function-Status"] == "500"
    assert await status_of(stack, "r2") == {"status": "failed", "attempts": 1, "functionStatus": 500}


async def test_retry_after_on_a_429_is_honoured(start_stack: StartStack, receiver: MakeReceiver) -> None:
    provider = FakeProvider()
    deploy(provider, **{"com.openfaas.retry.attempts": "2", "com.openfaas.retry.min_wait": "10ms"})
    stack = await started(await start_stack(provider=provider))
    back = await receiver()
    sent = time.monotonic()
    await stack.client.post(
        "/async-function/echo/flaky/c?fail=1&code=429&after=1", headers={"X-Callback-Url": back.url, "X-Call-Id": "ra"}
    )
    [callback] = await back.wait_for(1, timeout=10)
    assert callback["headers"]["X-Function-Status"] == "200"
    assert callback["at"] - sent >= 1.0  # the backoff alone would have waited 10 ms
    assert (await status_of(stack, "ra"))["attempts"] == 2


async def test_a_slow_receiver_holds_only_its_own_functions_callbacks(
    start_stack: StartStack, receiver: MakeReceiver
) -> None:
    provider = FakeProvider()
    deploy(provider, "slow.openfaas-fn", **{"com.pyfaasd.async.concurrency": "1"})
    deploy(provider, "fast.openfaas-fn", **{"com.pyfaasd.async.concurrency": "1"})
    functions = {"slow.openfaas-fn": ["127.0.0.1"], "fast.openfaas-fn": ["127.0.0.1"]}
    stack = await started(await start_stack(provider=provider, functions=functions))
    slow_back = await receiver(delay=3.0)
    fast_back = await receiver()
    for i in range(3):
        await stack.client.post("/async-function/slow", headers={"X-Callback-Url": slow_back.url, "X-Call-Id": f"s{i}"})
    began = time.monotonic()
    for i in range(5):
        await stack.client.post("/async-function/fast", headers={"X-Callback-Url": fast_back.url, "X-Call-Id": f"f{i}"})
    await fast_back.wait_for(5, timeout=5)
    assert time.monotonic() - began < 2.5  # not behind the slow receiver's 3 s per callback
    assert slow_back.got == []
    # The slow function's own calls were all invoked meanwhile: only its callbacks wait.
    for i in range(3):
        assert (await status_of(stack, f"s{i}"))["status"] == "done"


async def test_an_unreachable_callback_is_retried_then_given_up_and_the_status_stays_done(
    start_stack: StartStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.dispatcher.CALLBACK_MIN_WAIT_S", 0.01)
    monkeypatch.setattr("gateway.dispatcher.CALLBACK_MAX_WAIT_S", 0.02)
    provider = FakeProvider()
    deploy(provider)
    stack = await started(await start_stack(provider=provider))
    dead = "http://127.0.0.1:9/nobody-listens"
    await stack.client.post("/async-function/echo", headers={"X-Callback-Url": dead, "X-Call-Id": "u1"})

    async def callbacks(result: str) -> str:
        text = await (await stack.client.get("/metrics")).text()
        line = f'gateway_async_callbacks_total{{function_name="echo.openfaas-fn",result="{result}"}}'
        return next((row.split()[-1] for row in text.splitlines() if row.startswith(line)), "0")

    async with asyncio.timeout(10):
        while await callbacks("failed") != "1":
            await asyncio.sleep(0.05)
    assert await callbacks("retried") == "5"  # six tries in all
    assert await status_of(stack, "u1") == {"status": "done", "attempts": 1, "functionStatus": 200}


async def test_a_function_at_zero_replicas_is_scaled_from_zero_for_a_queued_call(
    start_stack: StartStack, receiver: MakeReceiver
) -> None:
    provider = FakeProvider()
    deploy(provider)
    provider.functions["echo.openfaas-fn"]["replicas"] = 0
    stack = await started(await start_stack(provider=provider, functions={}))

    async def on_scale(name: str, namespace: str, replicas: int) -> None:
        asyncio.get_running_loop().call_later(0.2, stack.set_hosts, {f"{name}.{namespace}": ["127.0.0.1"]})

    provider.on_scale = on_scale
    back = await receiver()
    await stack.client.post("/async-function/echo", headers={"X-Callback-Url": back.url})
    [callback] = await back.wait_for(1)
    assert callback["headers"]["X-Function-Status"] == "200"
    assert len(provider.calls_to("POST", "/system/scale-function/echo")) == 1


async def test_a_call_the_provider_cannot_scale_yet_is_put_back_not_failed(
    start_stack: StartStack, receiver: MakeReceiver
) -> None:
    """A gateway started before its provider, or a provider failing for a while: a queued call of a function at
    zero cannot be attempted, and waits for the provider instead of failing with the gateway's 502."""
    provider = FakeProvider()
    deploy(provider)
    provider.functions["echo.openfaas-fn"]["replicas"] = 0
    stack = await started(await start_stack(provider=provider, functions={}))
    scales = 0

    async def on_scale(name: str, namespace: str, replicas: int) -> None:
        nonlocal scales
        scales += 1
        if scales == 1:
            provider.functions["echo.openfaas-fn"]["replicas"] = 0  # still at zero
            raise RuntimeError("the platform is not ready")  # the fake provider answers 500
        asyncio.get_running_loop().call_later(0.1, stack.set_hosts, {f"{name}.{namespace}": ["127.0.0.1"]})

    provider.on_scale = on_scale
    back = await receiver()
    accepted = await stack.client.post("/async-function/echo", headers={"X-Callback-Url": back.url, "X-Call-Id": "w"})
    assert accepted.status == 202
    [callback] = await back.wait_for(1)
    assert callback["headers"]["X-Function-Status"] == "200"
    assert scales == 2
    answer = await until_status(stack, "w", "done")
    assert (answer["functionStatus"], len(stack.upstream.seen)) == (200, 1)  # invoked once, when it could be


async def test_a_second_gateway_on_the_same_state_dir_stands_by_then_takes_over_and_reruns_the_claim(
    start_stack: StartStack, receiver: MakeReceiver
) -> None:
    provider = FakeProvider()
    deploy(provider)
    first = await started(await start_stack(provider=provider, PYFAASD_WRITE_TIMEOUT="100ms"))
    second = await start_stack(provider=provider)
    second_role = second.app[ASYNC_ROLE]
    await asyncio.sleep(0.2)
    assert not second_role.holding.is_set()  # one dispatcher per state dir
    back = await receiver()

    # Accepted by the one that stands by, dispatched by the holder (woken through the doorbell).
    await second.client.post("/async-function/echo/quick", headers={"X-Callback-Url": back.url, "X-Call-Id": "q"})
    [quick] = await back.wait_for(1)
    assert quick["headers"]["X-Call-Id"] == "q"

    # The holder goes away while a call is in flight (its drain is too short to finish it): the claim is left in
    # the database, and the other gateway takes the lock, puts the call back and runs it again.
    await second.client.post("/async-function/echo/slow?s=1", headers={"X-Callback-Url": back.url, "X-Call-Id": "s"})
    async with asyncio.timeout(5):
        while (await status_of(second, "s"))["status"] != "running":
            await asyncio.sleep(0.02)
    await first.client.close()
    await asyncio.wait_for(second_role.holding.wait(), 5)
    [_, slow] = await back.wait_for(2)
    assert slow["headers"]["X-Call-Id"] == "s"
    assert slow["body"] == b"slow done"
    assert await status_of(second, "s") == {"status": "done", "attempts": 2, "functionStatus": 200}
