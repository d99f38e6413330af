"""http mode's upstream client against raw upstreams that answer with exact bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from tests.watchdog_harness import Harness, StartWatchdog

Answer = Callable[[bytes], bytes]


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[Answer, bool], asyncio.Future[int]]]:
    """Start a TCP server that reads one request head (and a Content-Length body) and writes canned bytes."""
    servers: list[asyncio.Server] = []
    connections: list[int] = []

    async def start(answer: Answer, close_after: bool) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            counted = False
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    if not counted:  # connections that carried a request (not the readiness probe's)
                        connections.append(1)
                        counted = True
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            await reader.readexactly(int(line.split(b":")[1]))
                    writer.write(answer(head))
                    await writer.drain()
                    if close_after:
                        break
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    start.connections = connections  # type: ignore[attr-defined]
    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


async def proxy_to(start_watchdog: StartWatchdog, port: int) -> Harness:
    harness = await start_watchdog({"mode": "http", "fprocess": "sleep 30", "upstream_url": f"http://127.0.0.1:{port}"})
    harness.readiness.mark_ready()  # the upstream here is the test's own server, not fprocess
    return harness


async def test_a_close_delimited_body_is_read_to_the_end(start_watchdog, raw_upstream) -> None:
    port = await raw_upstream(lambda head: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close", True)
    harness = await proxy_to(start_watchdog, port)
    response = await harness.client.get("/")
    assert (response.status, await response.text()) == (200, "until the close")


async def test_interim_100_continue_is_skipped(start_watchdog, raw_upstream) -> None:
    port = await raw_upstream(
        lambda head: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", False
    )
    harness = await proxy_to(start_watchdog, port)
    response = await harness.client.post("/", data=b"body", headers={"Expect": "100-continue"})
    assert (response.status, await response.text()) == (201, "ok")


async def test_head_keeps_the_upstream_content_length(start_watchdog, raw_upstream) -> None:
    port = await raw_upstream(lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", False)
    harness = await proxy_to(start_watchdog, port)
    response = await harness.client.head("/")
    assert response.status == 200
    assert response.headers["Content-Length"] == "1234"


async def test_no_content_has_no_body_and_keeps_the_connection(start_watchdog, raw_upstream) -> None:
    port = await raw_upstream(lambda head: b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", False)
    harness = await proxy_to(start_watchdog, port)
    for _ in range(5):
        response = await harness.client.delete("/thing")
        assert (response.status, response.headers["X-A"], await response.read()) == (204, "b", b"")
    assert len(raw_upstream.connections) == 1  # one keep-alive connection served all five


async def test_chunked_with_extensions_and_trailers_is_decoded(start_watchdog, raw_upstream) -> None:
    port = await raw_upstream(
        lambda head: (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        ),
        False,
    )
    harness = await proxy_to(start_watchdog, port)
    assert await (await harness.client.get("/")).text() == "hello world"
    assert await (await harness.client.get("/")).text() == "hello world"
    assert len(raw_upstream.connections) == 1


async def test_connection_close_is_honoured(start_watchdog, raw_upstream) -> None:
    port = await raw_upstream(lambda head: b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", True)
    harness = await proxy_to(start_watchdog, port)
    for _ in range(3):
        assert await (await harness.client.get("/")).text() == "x"
    assert len(raw_upstream.connections) == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        # A length int() would take but HTTP does not (RFC 9110 §8.6: digits only): a smuggling vector, refused.
        b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    ],
)
async def test_a_malformed_response_is_502(start_watchdog, raw_upstream, answer: bytes) -> None:
    port = await raw_upstream(lambda head: answer, True)
    harness = await proxy_to(start_watchdog, port)
    response = await harness.client.get("/")
    assert response.status == 502
    assert response.headers["X-OpenFaaS-Internal"] == "of-watchdog"


async def test_an_upstream_that_closes_without_answering_is_502(start_watchdog, raw_upstream) -> None:
    port = await raw_upstream(lambda head: b"", True)
    harness = await proxy_to(start_watchdog, port)
    assert (await harness.client.post("/", data=b"x")).status == 502


async def test_a_request_without_host_gets_the_upstream_host(start_watchdog, raw_upstream) -> None:
    seen: list[bytes] = []

    def answer(head: bytes) -> bytes:
        seen.append(head)
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    port = await raw_upstream(answer, False)
    harness = await proxy_to(start_watchdog, port)
    reader, writer = await asyncio.open_connection(harness.client.host, harness.client.port)
    writer.write(b"GET /x?y=1 HTTP/1.0\r\n\r\n")
    await writer.drain()
    assert (await reader.read()).startswith(b"HTTP/1.0 200")
    writer.close()
    assert seen[0].startswith(b"GET /x?y=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}".encode() in seen[0]
