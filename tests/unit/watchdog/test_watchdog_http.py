"""http mode, in front of a real function process (tests/fixtures/upstream_server.py)."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import aiohttp

from tests.helpers import free_port, http_mode_env
from tests.watchdog_harness import Harness, StartWatchdog


async def wait_ready(harness: Harness, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while (await harness.client.get("/_/ready")).status != 200:
            await asyncio.sleep(0.02)


async def start_http(start_watchdog: StartWatchdog, **env: str) -> Harness:
    harness = await start_watchdog(http_mode_env(**env))
    await wait_ready(harness)
    return harness


async def test_proxies_method_raw_path_query_headers_and_body(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog)
    response = await harness.client.put(
        "/a%2Fb/c?x=1&y=%20z", data=b"the body", headers={"X-Custom": "v", "Connection": "keep-alive"}
    )
    assert response.status == 200
    assert response.headers["X-Upstream"] == "yes"
    assert float(response.headers["X-Duration-Seconds"]) > 0
    seen = await response.json()
    assert seen["method"] == "PUT"
    assert seen["raw_path"] == "/a%2Fb/c?x=1&y=%20z"
    assert seen["body"] == "the body"
    assert seen["headers"]["X-Custom"] == "v"
    assert "Connection" not in seen["headers"] or seen["headers"]["Connection"] != "keep-alive"


async def test_upstream_status_and_redirects_are_passed_through(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog)
    assert (await harness.client.delete("/status/418")).status == 418
    redirect = await harness.client.get("/redirect", allow_redirects=False)
    assert redirect.status == 302
    assert redirect.headers["Location"] == "/elsewhere"


async def test_large_responses_stream_whole(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog)
    body = await (await harness.client.get("/big?size=3000000")).read()
    assert len(body) == 3_000_000


async def test_request_body_streams_chunked_unless_buffer_http(start_watchdog: StartWatchdog) -> None:
    async def chunks():
        for part in (b"one ", b"two"):
            yield part

    streamed = await start_http(start_watchdog)
    seen = await (await streamed.client.post("/", data=chunks())).json()
    assert seen["body"] == "one two"
    assert seen["chunked"] is True

    buffered = await start_http(start_watchdog, buffer_http="true")
    seen = await (await buffered.client.post("/", data=chunks())).json()
    assert seen["body"] == "one two"
    assert seen["chunked"] is False
    assert seen["headers"]["Content-Length"] == "7"


async def test_exec_timeout_is_504_with_the_internal_header(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog, exec_timeout="300ms")
    response = await harness.client.get("/slow?s=3")
    assert response.status == 504
    assert response.headers["X-OpenFaaS-Internal"] == "of-watchdog"
    assert "X-Duration-Seconds" in response.headers


async def test_x_timeout_header_shortens_the_deadline(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog, exec_timeout="10s")
    assert (await harness.client.get("/slow?s=2", headers={"X-Timeout": "200ms"})).status == 504
    assert (await harness.client.get("/slow?s=0.1", headers={"X-Timeout": "5s"})).status == 200


async def test_not_ready_until_the_function_process_accepts(start_watchdog: StartWatchdog, tmp_path: Path) -> None:
    os.environ["UPSTREAM_START_DELAY"] = "1.0"
    try:
        harness = await start_watchdog(http_mode_env())
        assert (await harness.client.get("/_/ready")).status == 503
        assert (await harness.client.get("/_/health")).status == 503
        assert not Path(harness.config.lock_path).exists()
        early = await harness.client.get("/")
        assert early.status == 503
        assert early.headers["X-OpenFaaS-Internal"] == "of-watchdog"
        await wait_ready(harness)
        assert Path(harness.config.lock_path).exists()
        health = await harness.client.get("/_/health")
        assert (health.status, await health.text()) == (200, "OK")
        assert (await harness.client.get("/")).status == 200
    finally:
        del os.environ["UPSTREAM_START_DELAY"]


async def test_a_crashed_function_process_is_restarted_and_503_meanwhile(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog)
    crashed = await harness.client.get("/crash")
    # The process died mid-request: 502, or 503 when the client's retry on a fresh connection was refused.
    assert crashed.status in (502, 503)
    assert crashed.headers["X-OpenFaaS-Internal"] == "of-watchdog"
    # Until the supervisor sees the exit, a connect can still reach the dying process's listening socket (502).
    async with asyncio.timeout(10):
        while harness.readiness.flags.ready:
            await asyncio.sleep(0.005)
    meanwhile = await harness.client.get("/")
    assert meanwhile.status == 503
    async with asyncio.timeout(10):
        while harness.supervisor.starts < 2:  # type: ignore[attr-defined]
            await asyncio.sleep(0.02)
    await wait_ready(harness)
    assert (await harness.client.get("/")).status == 200


async def test_a_connect_refused_is_503(start_watchdog: StartWatchdog) -> None:
    # A live function process that does not listen where upstream_url says, with readiness forced on.
    harness = await start_watchdog(
        {"mode": "http", "fprocess": "sleep 30", "upstream_url": f"http://127.0.0.1:{free_port()}"}
    )
    harness.readiness.mark_ready()
    refused = await harness.client.get("/")
    assert refused.status == 503
    assert refused.headers["X-OpenFaaS-Internal"] == "of-watchdog"
    assert "refused" in await refused.text()


async def test_server_sent_events_arrive_event_by_event(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog)
    loop = asyncio.get_running_loop()
    response = await harness.client.get(
        "/stream?n=3&delay=0.4&type=text/event-stream", headers={"Accept": "text/event-stream"}
    )
    assert response.status == 200
    arrivals = []
    async for line in response.content:
        if line.startswith(b"data:"):
            arrivals.append(loop.time())
    assert len(arrivals) == 3
    assert arrivals[2] - arrivals[0] > 0.6  # not buffered until the end


async def test_chunked_ndjson_is_not_cut_by_exec_timeout(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog, exec_timeout="500ms")
    response = await harness.client.get(
        "/stream?n=4&delay=0.3&type=application/x-ndjson", headers={"Accept": "application/x-ndjson"}
    )
    assert (await response.read()).count(b"chunk") == 4


async def test_websocket_upgrades_pass_through(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog)
    async with harness.client.ws_connect("/ws") as ws:
        await ws.send_str("hi")
        message = await ws.receive(timeout=5)
        assert message.type is aiohttp.WSMsgType.TEXT
        assert message.data == "echo: hi"


async def test_function_output_is_forwarded_line_by_line_without_cutting(start_watchdog: StartWatchdog, capfd) -> None:
    harness = await start_http(start_watchdog, prefix_logs="true")
    long_line = "L" * 200_000
    assert (await harness.client.post("/say", data=long_line)).status == 200
    await asyncio.sleep(0.3)
    out, err = capfd.readouterr()
    lines = [line for line in out.splitlines() if "stdout: L" in line]
    assert len(lines) == 1
    assert lines[0].endswith("stdout: " + long_line)
    assert "stderr: to stderr: LLLL" in err


async def test_metrics_count_function_requests_only(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog)
    await harness.client.get("/")
    await harness.client.get("/status/404")
    await harness.client.get("/_/health")
    text = harness.metrics.render()
    assert 'http_requests_total{code="200",method="GET"} 1' in text
    assert 'http_requests_total{code="404",method="GET"} 1' in text


async def raw_exchange(harness: Harness, request: bytes, pause_s: float) -> bytes:
    """Send ``request`` and then nothing for ``pause_s``; return what the watchdog answered."""
    server = harness.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(pause_s):
            return await reader.read(65536)
    finally:
        writer.close()


async def test_a_body_not_sent_within_read_timeout_is_408(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog, read_timeout="300ms", exec_timeout="10s")
    # A sized body read whole before proxying: 5 of 10 bytes, then silence.
    answer = await raw_exchange(harness, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello", 5)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"X-OpenFaaS-Internal: of-watchdog" in answer
    # A chunked body streamed to the function: one chunk, then silence.
    head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    answer = await raw_exchange(harness, head, 5)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request body not received within 0.3s" in answer
    assert (await harness.client.post("/", data=b"in time")).status == 200


async def test_a_body_over_max_body_bytes_is_413(start_watchdog: StartWatchdog) -> None:
    async def chunks(count: int):
        for _ in range(count):
            yield b"c" * 400
            await asyncio.sleep(0)

    for extra in ({}, {"buffer_http": "true"}):
        harness = await start_http(start_watchdog, max_body_bytes="1000", **extra)
        sized = await harness.client.post("/", data=b"z" * 1001)
        assert sized.status == 413
        assert sized.headers["X-OpenFaaS-Internal"] == "of-watchdog"
        assert (await harness.client.post("/", data=chunks(3))).status == 413  # found while it arrives
        assert (await (await harness.client.post("/", data=b"z" * 1000)).json())["body"] == "z" * 1000
        assert (await (await harness.client.post("/", data=chunks(2))).json())["body"] == "c" * 800


async def test_bodies_have_no_size_limit_by_default(start_watchdog: StartWatchdog) -> None:
    harness = await start_http(start_watchdog)
    assert harness.config.max_body_bytes == 0
    seen = await (await harness.client.post("/", data=io.BytesIO(b"b" * 1_000_000))).json()
    assert len(seen["body"]) == 1_000_000  # the function server itself takes up to 1 MiB
