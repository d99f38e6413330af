"""Sending a client's request upstream and the answer back, on the pooled keep-alive client of servicekit.upstream.

Shared by the function proxy (to replicas) and the ``/system`` pass-through (to the provider). Request bodies
up to :data:`BUFFERED_REQUEST_MAX` are read whole (within ``read_timeout``) and sent with the head in one write;
larger or chunked ones are streamed with flow control. Responses with a known length up to
:data:`BUFFERED_RESPONSE_MAX` are read whole and sent in one write; others stream through as they arrive.

Failures become the gateway's errors: refused or broken connections 502, deadlines 504, a body that is too big
413, a client too slow to send its body 408.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Final

import structlog
from aiohttp import web
from multidict import CIMultiDict

from gateway.errors import (
    BodyTooLargeError,
    RequestTimeoutError,
    UpstreamBadResponseError,
    UpstreamConnectError,
    UpstreamTimeoutError,
)
from servicekit.headers import HOP_BY_HOP
from servicekit.upstream import (
    ResponseHead,
    UpstreamClosedError,
    UpstreamConnection,
    UpstreamPool,
    UpstreamProtocolError,
)

log = structlog.get_logger("gateway")

BUFFERED_REQUEST_MAX: Final = 1024 * 1024
BUFFERED_RESPONSE_MAX: Final = 256 * 1024
WRITE_JOIN_MAX: Final = 64 * 1024  # below this the request head and body go out in one write
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
HOP_BY_HOP_BYTES: Final = frozenset(h.encode() for h in HOP_BY_HOP)
# Request headers never copied as they are: hop-by-hop, the framing, Host (upstream gets its own), Expect (the
# gateway answered it already).
REQUEST_DROP: Final = HOP_BY_HOP_BYTES | {b"host", b"content-length", b"expect"}
STREAMING_TYPES: Final = ("text/event-stream", "application/x-ndjson")


class Pools:
    """One keep-alive pool per upstream address; pools of addresses that left the hosts table are closed."""

    __slots__ = ("_pools", "port")

    def __init__(self, port: int) -> None:
        self.port = port
        self._pools: dict[str, UpstreamPool] = {}

    def get(self, host: str) -> UpstreamPool:
        pool = self._pools.get(host)
        if pool is None:
            pool = self._pools[host] = UpstreamPool(host, self.port)
        return pool

    def __contains__(self, host: str) -> bool:
        return host in self._pools

    def prune(self, live: set[str]) -> None:
        for host in [h for h in self._pools if h not in live]:
            self._pools.pop(host).close()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def connection_tokens(request: web.Request) -> frozenset[bytes]:
    """Extra header names the client's ``Connection`` header marks as hop-by-hop (usually none)."""
    value = request.headers.get("Connection")
    if not value:
        return frozenset()
    tokens = {t.strip().lower() for t in value.split(",")} - {"close", "keep-alive", ""}
    return frozenset(t.encode() for t in tokens)


def copy_response_headers(head: ResponseHead, target: CIMultiDict[str], *, drop_length: bool) -> None:
    """Add the upstream's headers to ``target`` minus hop-by-hop ones (and those its ``Connection`` names)."""
    extra: list[str] = []
    for name, value in head.headers:
        lower = name.lower()
        if lower in HOP_BY_HOP:
            if lower == "connection":
                extra += (t.strip() for t in value.split(","))
            continue
        if drop_length and lower == "content-length":
            continue
        target.add(name, value)
    for name in extra:
        if name.lower() not in ("close", "keep-alive", ""):
            target.popall(name, None)


def is_whole(method: str, head: ResponseHead) -> bool:
    """Whether the response is read whole and sent in one write (small, sized, and not to a HEAD)."""
    length = head.content_length
    return method != "HEAD" and (not head.has_body or (length is not None and length <= BUFFERED_RESPONSE_MAX))


def whole_response(
    head: ResponseHead, data: bytes, extra_headers: Iterable[tuple[str, str]] = (), status: int | None = None
) -> web.Response:
    response = web.Response(status=status or head.status, reason=None if status else head.reason or None)
    headers = response.headers
    copy_response_headers(head, headers, drop_length=True)
    for name, value in extra_headers:
        headers[name] = value
    if head.has_body:
        response.body = data
    return response


def framing(method: str, body_length: int | None) -> bytes:
    """The framing header of a request body: None is a streamed body of unknown length (chunked)."""
    if body_length is None:
        return b"Transfer-Encoding: chunked\r\n"
    if body_length or method in ("POST", "PUT", "PATCH"):
        return b"Content-Length: %d\r\n" % body_length
    return b""


def is_streaming_request(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return bool(accept) and any(t in accept for t in STREAMING_TYPES)


def is_streaming_response(head: ResponseHead) -> bool:
    for name, value in head.headers:
        if name.lower() == "content-type":
            return value.startswith(STREAMING_TYPES)
    return False


async def read_body(request: web.Request, max_body: int, read_timeout: float) -> bytes | None:
    """The whole request body when it is small and its length known, else None (stream it)."""
    if not request.body_exists:
        return b""
    length = request.content_length
    if max_body and length is not None and length > max_body:
        raise BodyTooLargeError(f"request body of {length} bytes is over the limit of {max_body}")
    if length is None or length > BUFFERED_REQUEST_MAX:
        return None
    try:
        async with asyncio.timeout(read_timeout):
            return await request.read()
    except TimeoutError:
        raise RequestTimeoutError(f"request body not received within {read_timeout:g}s") from None


async def send_streamed_body(
    request: web.Request, connection: UpstreamConnection, chunked: bool, max_body: int, read_timeout: float
) -> None:
    """Copy the client's body to the upstream as it arrives (flow control both ways)."""
    sent = 0
    try:
        async with asyncio.timeout(read_timeout):
            async for chunk in request.content.iter_any():
                sent += len(chunk)
                if max_body and sent > max_body:
                    raise BodyTooLargeError(f"request body is over the limit of {max_body} bytes")
                await connection.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                await connection.write(b"0\r\n\r\n")
    except TimeoutError:
        raise RequestTimeoutError(f"request body not received within {read_timeout:g}s") from None


async def exchange(
    pool: UpstreamPool,
    head: bytes,
    body: bytes | None,
    request: web.Request | None,
    *,
    max_body: int = 0,
    read_timeout: float = 60.0,
    chunked: bool = False,
) -> tuple[UpstreamConnection, ResponseHead]:
    """Send a request on a pooled connection and read the response head.

    ``body`` None streams ``request``'s body: chunk-encoded when ``chunked`` (``head`` must say so), else raw
    under the Content-Length in ``head``. A pooled connection the upstream closed while idle fails before any
    response byte: an idempotent request whose body is in memory is then sent once more on a new connection.
    Connect failures propagate as OSError (ConnectionRefusedError when refused) so the caller can pick another
    replica.
    """
    method = request.method if request is not None else ""
    while True:
        connection = await pool.connect()
        try:
            if body is None:
                assert request is not None
                await connection.write(head)
                await send_streamed_body(request, connection, chunked, max_body, read_timeout)
            elif len(body) > WRITE_JOIN_MAX:
                await connection.write(head)
                await connection.write(body)
            else:
                await connection.write(head + body if body else head)
            return connection, await connection.read_head(method or _method_of(head))
        except UpstreamClosedError as exc:
            connection.close()
            retry = connection.reused and exc.before_response and body is not None
            if retry and (method or _method_of(head)) in IDEMPOTENT:
                continue
            raise UpstreamConnectError(f"the connection broke before an answer: {exc}") from None
        except UpstreamProtocolError as exc:
            connection.close()
            raise UpstreamBadResponseError(f"unusable answer: {exc}") from None
        except BaseException:
            connection.close()
            raise


def _method_of(head: bytes) -> str:
    return head[: head.index(b" ")].decode("ascii")


async def read_whole(pool: UpstreamPool, connection: UpstreamConnection, head: ResponseHead) -> bytes:
    """The rest of a response, then the connection back to the pool."""
    if not head.has_body:
        pool.release(connection, head)
        return b""
    try:
        data = await connection.read_body(head)
    except UpstreamProtocolError as exc:
        connection.close()
        raise UpstreamBadResponseError(f"unusable answer: {exc}") from None
    except OSError as exc:  # UpstreamClosedError included
        connection.close()
        raise UpstreamConnectError(f"the connection broke mid-answer: {exc}") from None
    except BaseException:
        connection.close()
        raise
    pool.release(connection, head)
    return data


async def relay(
    request: web.Request,
    pool: UpstreamPool,
    connection: UpstreamConnection,
    head: ResponseHead,
    extra_headers: Iterable[tuple[str, str]] = (),
    *,
    body_deadline: float | None = None,
    write_timeout: float = 60.0,
    status: int | None = None,
) -> web.StreamResponse:
    """Answer the client with the upstream's response: whole when small and sized, else streamed.

    ``body_deadline`` (a loop time) is when the upstream must have sent the whole body; it does not apply to
    server-sent events and NDJSON. ``write_timeout`` bounds each stalled write to the client. ``status``
    overrides the upstream's.
    """
    if is_whole(request.method, head):
        try:
            async with asyncio.timeout_at(body_deadline):
                data = await read_whole(pool, connection, head)
        except TimeoutError:
            raise UpstreamTimeoutError("the upstream did not send its answer in time") from None
        return whole_response(head, data, extra_headers, status)
    if is_streaming_response(head) or is_streaming_request(request):
        body_deadline = None
    return await _stream(request, pool, connection, head, extra_headers, body_deadline, write_timeout, status)


async def _stream(
    request: web.Request,
    pool: UpstreamPool,
    connection: UpstreamConnection,
    head: ResponseHead,
    extra_headers: Iterable[tuple[str, str]],
    body_deadline: float | None,
    write_timeout: float,
    status: int | None,
) -> web.StreamResponse:
    response = web.StreamResponse(status=status or head.status, reason=None if status else head.reason or None)
    headers = response.headers
    copy_response_headers(head, headers, drop_length=False)
    for name, value in extra_headers:
        headers[name] = value
    loop = asyncio.get_running_loop()

    def writing() -> float:
        limit = loop.time() + write_timeout
        return limit if body_deadline is None else min(limit, body_deadline)

    try:
        async with asyncio.timeout_at(writing()) as timer:
            await response.prepare(request)
            timer.reschedule(body_deadline)
            async for chunk in connection.body(head):
                timer.reschedule(writing())
                await response.write(chunk)
                timer.reschedule(body_deadline)
            timer.reschedule(writing())
            await response.write_eof()
    except (OSError, UpstreamProtocolError, TimeoutError) as exc:
        # Too late for a status: cut the connection so the client sees an incomplete body, not a short one.
        connection.close()
        log.warning("response_aborted", error=repr(exc))
        if request.transport is not None:
            request.transport.close()
        return response
    except BaseException:
        connection.close()
        raise
    pool.release(connection, head)
    return response
