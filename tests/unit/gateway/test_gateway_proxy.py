"""/function/<name>[.<namespace>][/<path>]: routing, headers, bodies, streaming, statuses, replicas."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import uuid
from collections.abc import Iterator

import aiohttp
import pytest

from gateway.errors import BadRequestError, FunctionNotFoundError
from gateway.keys import METRICS, POOLS, RESOLVER
from gateway.proxy import new_call_id, split_function_path, split_name
from tests.unit.gateway.conftest import StartStack


@pytest.mark.parametrize(
    ("raw", "segment", "target"),
    [
        ("/function/echo", "echo", "/"),
        ("/function/echo/", "echo", "/"),
        ("/function/echo?a=1", "echo", "/?a=1"),
        ("/function/echo.dev/a/b?x=%20y&x=2", "echo.dev", "/a/b?x=%20y&x=2"),
        ("/function/echo/a%2Fb/?q", "echo", "/a%2Fb/?q"),
    ],
    ids=["bare", "slash", "query", "namespace-path-query", "encoded-path"],
)
def test_split_function_path_keeps_the_raw_path_and_query(raw, segment, target) -> None:
    assert split_function_path(raw) == (segment, target)


@pytest.mark.parametrize(
    ("segment", "name", "namespace"),
    [("echo", "echo", "openfaas-fn"), ("echo.dev", "echo", "dev"), ("e%63ho.dev", "echo", "dev")],
)
def test_split_name_takes_the_namespace_after_the_last_dot(segment, name, namespace) -> None:
    assert split_name(segment) == (name, namespace)


@pytest.mark.parametrize("segment", ["bad$name", "echo.", ".dev", "my.fn.team-a"])
def test_split_name_refuses_what_cannot_be_a_function(segment) -> None:
    with pytest.raises(FunctionNotFoundError):
        split_name(segment)


def test_split_name_refuses_an_empty_name() -> None:
    with pytest.raises(BadRequestError):
        split_name("")


async def test_proxies_method_path_raw_query_and_body_to_the_replica(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.post(
        "/function/echo.openfaas-fn/a/b%20c?x=1&y=a%26b", data=b"hello", headers={"Content-Type": "text/csv"}
    )
    assert response.status == 200
    seen = await response.json()
    assert seen["method"] == "POST"
    assert seen["target"] == "/a/b%20c?x=1&y=a%26b"  # the /function/<name> prefix is not forwarded
    assert seen["body"] == "hello"
    assert seen["headers"]["Content-Type"] == "text/csv"
    assert response.headers["X-Replica"] == "127.0.0.1"


async def test_the_default_namespace_is_openfaas_fn(start_stack: StartStack) -> None:
    stack = await start_stack(functions={"echo.openfaas-fn": ["127.0.0.1"], "other.dev": []})
    assert (await stack.client.get("/function/echo")).status == 200
    assert (await (await stack.client.get("/function/echo")).json())["target"] == "/"


async def test_a_namespace_after_the_dot_selects_that_namespace(start_stack: StartStack) -> None:
    stack = await start_stack(functions={"echo.dev": ["127.0.0.1"]})
    assert (await stack.client.get("/function/echo.dev/x")).status == 200
    # Without the namespace it is another function, unknown to the fake provider.
    missing = await stack.client.get("/function/echo/x")
    assert missing.status == 404


async def test_headers_added_kept_and_dropped(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.get(
        "/function/echo/path",
        headers={
            "X-Call-Id": "call-42",
            "X-Forwarded-For": "203.0.113.9",
            "Proxy-Authorization": "Basic eDp5",
            "Keep-Alive": "timeout=5",
            "Connection": "keep-alive, X-Private",
            "X-Private": "hop",
            "X-Kept": "yes",
            "X-Start-Time": "1",
        },
    )
    seen = (await response.json())["headers"]
    assert seen["X-Call-Id"] == "call-42"  # the caller's is kept
    assert seen["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
    assert seen["X-Forwarded-Host"] == f"127.0.0.1:{stack.client.port}"
    assert seen["X-Forwarded-Prefix"] == "/function/echo"
    assert int(seen["X-Start-Time"]) > 1_600_000_000 * 10**9  # ours, in Unix nanoseconds
    assert seen["X-Kept"] == "yes"
    for hop in ("Proxy-Authorization", "Keep-Alive", "X-Private"):
        assert hop not in seen
    assert response.headers["X-Call-Id"] == "call-42"
    assert response.headers["X-Start-Time"] == seen["X-Start-Time"]


async def test_a_call_id_is_made_when_missing_and_echoed(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.get("/function/echo.openfaas-fn")
    seen = (await response.json())["headers"]
    assert len(seen["X-Call-Id"]) == 36
    assert response.headers["X-Call-Id"] == seen["X-Call-Id"]
    assert seen["X-Forwarded-Prefix"] == "/function/echo.openfaas-fn"  # as the client named it


async def test_an_outer_forwarded_prefix_is_kept_in_front(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.get("/function/echo", headers={"X-Forwarded-Prefix": "/faas/"})
    assert (await response.json())["headers"]["X-Forwarded-Prefix"] == "/faas/function/echo"


async def test_statuses_and_redirects_pass_through_unfollowed(start_stack: StartStack) -> None:
    stack = await start_stack()
    teapot = await stack.client.delete("/function/echo/status/418")
    assert (teapot.status, await teapot.text()) == (418, "status 418")
    assert "X-OpenFaaS-Internal" not in teapot.headers
    moved = await stack.client.get("/function/echo/redirect", allow_redirects=False)
    assert moved.status == 302
    assert moved.headers["Location"] == "/elsewhere"


async def test_head_keeps_the_length_without_a_body(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.head("/function/echo/big?n=1000")
    assert response.status == 200
    assert response.headers["Content-Length"] == "1000"


@pytest.mark.parametrize("size", [10, 300_000, 3_000_000], ids=["small", "over-buffer", "streamed"])
async def test_bodies_of_any_size_arrive_whole_both_ways(start_stack: StartStack, size: int) -> None:
    stack = await start_stack()
    response = await stack.client.put("/function/echo", data=io.BytesIO(b"b" * size))
    assert (await response.json())["length"] == size
    big = await stack.client.get(f"/function/echo/big?n={size}")
    assert await big.read() == b"x" * size


async def test_a_chunked_request_body_streams_through(start_stack: StartStack) -> None:
    stack = await start_stack()

    async def parts():
        for _ in range(5):
            yield b"p" * 1000
            await asyncio.sleep(0)

    response = await stack.client.post("/function/echo", data=parts())
    seen = await response.json()
    assert seen["length"] == 5000
    assert "Content-Length" not in seen["headers"]


async def test_a_body_over_the_limit_is_413(start_stack: StartStack) -> None:
    stack = await start_stack(PYFAASD_MAX_BODY_BYTES="1000")
    response = await stack.client.post("/function/echo", data=b"z" * 1001)
    assert response.status == 413
    assert response.headers["X-OpenFaaS-Internal"] == "gateway"
    assert stack.upstream.seen == []
    assert (await stack.client.post("/function/echo", data=b"z" * 1000)).status == 200


async def test_a_body_not_sent_within_read_timeout_is_408(start_stack: StartStack) -> None:
    stack = await start_stack(PYFAASD_READ_TIMEOUT="300ms")
    server = stack.client.server
    for head in (
        b"POST /function/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello",  # read whole first
        b"POST /function/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",  # streamed
    ):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(head)
        async with asyncio.timeout(5):
            answer = await reader.read(65536)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"X-OpenFaaS-Internal: gateway" in answer
    assert (await stack.client.post("/function/echo", data=b"in time")).status == 200


async def test_a_chunked_response_arrives_chunk_by_chunk(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.get("/function/echo/held")
    assert response.status == 200
    async with asyncio.timeout(5):  # the replica sends "second" only after we saw "first"
        assert await response.content.readline() == b"first\n"
    stack.upstream.release.set()
    assert await response.content.read() == b"second\n"


async def test_server_sent_events_arrive_event_by_event(start_stack: StartStack) -> None:
    stack = await start_stack(PYFAASD_UPSTREAM_TIMEOUT="300ms")
    response = await stack.client.get("/function/echo/sse", headers={"Accept": "text/event-stream"})
    assert response.headers["Content-Type"] == "text/event-stream"
    events: list[bytes] = []
    async with asyncio.timeout(5):
        while len(events) < 3:
            line = await response.content.readline()
            if line.startswith(b"data:"):
                events.append(line)
                if len(events) == 2:
                    await asyncio.sleep(0.4)  # past upstream_timeout: no deadline on an event stream
                stack.upstream.release.set()
    assert events == [b"data: 0\n", b"data: 1\n", b"data: 2\n"]


async def test_websocket_upgrades_pass_through(start_stack: StartStack) -> None:
    stack = await start_stack()
    async with stack.client.ws_connect("/function/echo/ws", headers={"X-Call-Id": "ws-1"}) as ws:
        await ws.send_str("hi")
        message = await ws.receive(timeout=5)
        assert (message.type, message.data) == (aiohttp.WSMsgType.TEXT, "127.0.0.1 echo: hi")
        await ws.send_str("headers")
        headers = await ws.receive_json(timeout=5)
        assert headers["X-Call-Id"] == "ws-1"
        assert headers["X-Forwarded-Prefix"] == "/function/echo"


async def test_unknown_function_is_404_with_a_message(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.get("/function/nope")
    assert response.status == 404
    assert response.headers["X-OpenFaaS-Internal"] == "gateway"
    assert await response.text() == "error finding function nope.openfaas-fn: no such function\n"
    assert "X-Call-Id" in response.headers


async def test_an_empty_name_is_400_and_other_paths_404(start_stack: StartStack) -> None:
    stack = await start_stack()
    assert (await stack.client.get("/function/")).status == 400
    other = await stack.client.get("/nowhere")
    assert other.status == 404
    assert await other.text() == "404 page not found\n"


async def test_a_refused_connection_is_502(start_stack: StartStack) -> None:
    stack = await start_stack(replicas=())
    stack.set_hosts({"echo.openfaas-fn": ["127.0.0.1"]})  # listed, but nothing listens on the function port
    response = await stack.client.get("/function/echo")
    assert response.status == 502
    assert response.headers["X-OpenFaaS-Internal"] == "gateway"
    assert "refused" in await response.text()


@contextlib.contextmanager
def unanswered_connects(ip: str, port: int) -> Iterator[None]:
    """A listener on ``ip:port`` that never accepts, its queue full: further SYNs are dropped, connects hang
    (as they do when the function's bridge is gone)."""
    listener = socket.socket()
    listener.bind((ip, port))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((ip, port))
            fillers.append(filler)
        yield
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_replica_that_cannot_be_connected_to_is_a_quick_503(start_stack: StartStack) -> None:
    stack = await start_stack(replicas=(), PYFAASD_CONNECT_TIMEOUT="300ms")
    stack.set_hosts({"echo.openfaas-fn": ["127.0.0.7"]})
    with unanswered_connects("127.0.0.7", stack.function_port):
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await stack.client.get("/function/echo")
        assert response.status == 503
        assert loop.time() - started < 2  # not the upstream timeout (60 s)
        assert response.headers["Retry-After"] == "1"
        assert "unreachable" in await response.text()


async def test_a_replica_that_cannot_be_connected_to_is_skipped_for_another(start_stack: StartStack) -> None:
    stack = await start_stack(replicas=("127.0.0.1",), PYFAASD_CONNECT_TIMEOUT="300ms")
    stack.set_hosts({"echo.openfaas-fn": ["127.0.0.7", "127.0.0.1"]})
    with unanswered_connects("127.0.0.7", stack.function_port):
        for _ in range(4):
            response = await stack.client.post("/function/echo", data=b"once")
            assert response.status == 200
            assert response.headers["X-Replica"] == "127.0.0.1"
    assert len(stack.upstream.seen) == 4


async def test_an_upstream_timeout_is_504(start_stack: StartStack) -> None:
    stack = await start_stack(PYFAASD_UPSTREAM_TIMEOUT="300ms")
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await stack.client.get("/function/echo/slow?s=3")
    assert response.status == 504
    assert response.headers["X-OpenFaaS-Internal"] == "gateway"
    assert loop.time() - started < 2
    assert (await stack.client.get("/function/echo/slow?s=0")).status == 200


async def test_round_robin_over_three_replicas(start_stack: StartStack) -> None:
    ips = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    stack = await start_stack(replicas=ips)
    served = [(await stack.client.get("/function/echo")).headers["X-Replica"] for _ in range(9)]
    assert sorted(served) == sorted(ips * 3)
    assert served[:3] == served[3:6] == served[6:]  # in turn, not by chance


async def test_a_refused_replica_is_retried_on_another_and_skipped(start_stack: StartStack) -> None:
    stack = await start_stack(replicas=("127.0.0.1", "127.0.0.2"))
    stack.set_hosts({"echo.openfaas-fn": ["127.0.0.1", "127.0.0.5", "127.0.0.2"]})  # .5 listens nowhere
    served = []
    for _ in range(6):
        response = await stack.client.post("/function/echo", data=b"once")
        assert response.status == 200
        served.append(response.headers["X-Replica"])
    assert set(served) == {"127.0.0.1", "127.0.0.2"}
    assert len(stack.upstream.seen) == 6  # every request delivered exactly once


async def test_a_hosts_file_change_is_followed_without_a_restart(start_stack: StartStack) -> None:
    stack = await start_stack(replicas=("127.0.0.1", "127.0.0.2"), functions={"echo.openfaas-fn": ["127.0.0.1"]})
    assert (await stack.client.get("/function/echo")).headers["X-Replica"] == "127.0.0.1"
    stack.set_hosts({"echo.openfaas-fn": ["127.0.0.2"]})
    async with asyncio.timeout(2):
        while (await stack.client.get("/function/echo")).headers["X-Replica"] != "127.0.0.2":
            await asyncio.sleep(0.01)
    stack.set_hosts({"echo.openfaas-fn": ["127.0.0.2"], "new.openfaas-fn": ["127.0.0.1"]})
    # A name that just appeared is found at once: a miss re-checks the file before asking the provider.
    response = await stack.client.get("/function/new")
    assert (response.status, response.headers["X-Replica"]) == (200, "127.0.0.1")
    assert stack.provider.calls == []


async def test_invocations_are_counted_per_function_and_code(start_stack: StartStack) -> None:
    stack = await start_stack()
    await stack.client.get("/function/echo")
    await stack.client.get("/function/echo.openfaas-fn/status/500")
    await stack.client.get("/function/unknown")  # never deployed: no series for it
    text = await (await stack.client.get("/metrics")).text()
    assert 'gateway_function_invocation_total{function_name="echo.openfaas-fn",code="200"} 1' in text
    assert 'gateway_function_invocation_total{function_name="echo.openfaas-fn",code="500"} 1' in text
    assert 'gateway_function_invocation_started{function_name="echo.openfaas-fn"} 2' in text
    assert 'gateway_functions_seconds_count{function_name="echo.openfaas-fn",code="200"} 1' in text
    assert 'gateway_service_count{function_name="echo.openfaas-fn"} 1' in text
    assert "unknown" not in text
    assert stack.app[METRICS].invocation_counts() == {"echo.openfaas-fn": 2.0}


async def test_idle_pools_of_replicas_that_left_are_closed(start_stack: StartStack) -> None:
    stack = await start_stack(replicas=("127.0.0.2", "127.0.0.3"), functions={"echo.openfaas-fn": ["127.0.0.2"]})
    await stack.client.get("/function/echo")
    assert "127.0.0.2" in stack.app[POOLS]
    stack.set_hosts({"echo.openfaas-fn": ["127.0.0.3"]})  # same size: only the racy-read rule notices
    stack.app[RESOLVER].refresh(force=True)
    assert "127.0.0.2" not in stack.app[POOLS]
    assert (await stack.client.get("/function/echo")).headers["X-Replica"] == "127.0.0.3"


async def test_gateway_liveness_is_local(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.get("/_/health")
    assert (response.status, await response.text()) == (200, "OK")


def test_call_ids_are_uuid_shaped_and_a_forked_worker_makes_its_own() -> None:
    first, second = new_call_id(), new_call_id()
    assert first != second
    assert uuid.UUID(first).version == 4
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, new_call_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert uuid.UUID(child).version == 4
    assert child[:23] != first[:23]  # another random prefix, so the counters of two workers never collide
