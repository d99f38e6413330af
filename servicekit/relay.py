"""One proxied exchange: a client's request sent upstream on servicekit.upstream's pooled client, the answer back.

Used by the watchdog's http mode (to the function process) and the gateway (to replicas and to the provider).
Request bodies up to :data:`BUFFERED_REQUEST_MAX` are read whole (within ``read_timeout``) and sent with the head
in one write; larger or chunked ones are streamed with flow control, within the same ``read_timeout`` and
``max_body``. Responses with a known length up to :data:`BUFFERED_RESPONSE_MAX` are read whole and sent in one
write; others stream through as they arrive.

Failures are :class:`RelayError` subclasses that name what went wrong, never a status: each service maps them
to its own (the watchdog in ``watchdog/errors.py``, the gateway in ``gateway/errors.py``). A connect failure
stays an OSError (ConnectionRefusedError when refused), and a deadline given by the caller a TimeoutError, so the
caller can pick another replica or say whose deadline it was.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog

from servicekit.client_side import ClientRequest, Headers, Reply
from servicekit.upstream import (
    ResponseHead,
    UpstreamClosedError,
    UpstreamConnection,
    UpstreamPool,
    UpstreamProtocolError,
)

log = structlog.get_logger("relay")

BUFFERED_REQUEST_MAX: Final = 1024 * 1024
BUFFERED_RESPONSE_MAX: Final = 256 * 1024
WRITE_JOIN_MAX: Final = 64 * 1024  # below this the request head and body go out in one write
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
STREAMING_TYPES: Final = ("text/event-stream", "application/x-ndjson")
_STREAMING_TYPES_BYTES: Final = tuple(t.encode() for t in STREAMING_TYPES)


class RelayError(Exception):
    """A failure of one exchange; ``str(self)`` is a one-line reason fit for the client."""


class BodyTooLargeError(RelayError):
    """The client's request body is over ``max_body``."""


class BodyTimeoutError(RelayError):
    """The client did not send its request body within ``read_timeout``."""


class UpstreamBrokenError(RelayError):
    """The upstream closed or broke the connection before its answer was complete."""


class UpstreamBadAnswerError(RelayError):
    """The upstream answered something that is not HTTP/1.1 we can pass on."""


class AnswerTimeoutError(RelayError):
    """The upstream did not send its whole answer by the body deadline."""


def is_whole(method: str, head: ResponseHead) -> bool:
    """Whether the response is read whole and sent in one write (small, sized, and not to a HEAD)."""
    length = head.content_length
    return method != "HEAD" and (not head.has_body or (length is not None and length <= BUFFERED_RESPONSE_MAX))


def is_streaming_request(request: ClientRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return bool(accept) and any(t in accept for t in STREAMING_TYPES)


def is_streaming_response(head: ResponseHead) -> bool:
    content_type = head.header(b"content-type")
    return content_type is not None and content_type.startswith(_STREAMING_TYPES_BYTES)


def _too_large(max_body: int) -> BodyTooLargeError:
    return BodyTooLargeError(f"request body is over the limit of {max_body} bytes")


def _too_slow(read_timeout: float | None) -> BodyTimeoutError:
    return BodyTimeoutError(f"request body not received within {read_timeout:g}s")


async def read_body(
    request: ClientRequest, max_body: int, read_timeout: float | None, *, whole: bool = False
) -> bytes | None:
    """The whole request body when it is small and its length known (or ``whole``), else None (stream it).

    ``max_body`` 0 and ``read_timeout`` None are no limit.
    """
    if not request.body_exists:
        return b""
    length = request.content_length
    if max_body and length is not None and length > max_body:
        raise BodyTooLargeError(f"request body of {length} bytes is over the limit of {max_body}")
    if not whole and (length is None or length > BUFFERED_REQUEST_MAX):
        return None
    try:
        async with asyncio.timeout(read_timeout):
            if length is not None or not max_body:
                return await request.read()
            chunks: list[bytes] = []
            size = 0
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > max_body:
                    raise _too_large(max_body)
                chunks.append(chunk)
            return b"".join(chunks)
    except TimeoutError:
        raise _too_slow(read_timeout) from None


def body_length(request: ClientRequest, body: bytes | None) -> int | None:
    """The length the request head announces for what :func:`read_body` returned: None is chunked."""
    return len(body) if body is not None else request.content_length


async def send_streamed_body(
    request: ClientRequest,
    connection: UpstreamConnection,
    chunked: bool,
    max_body: int,
    read_timeout: float | None,
) -> None:
    """Copy the client's body to the upstream as it arrives (flow control both ways)."""
    sent = 0
    try:
        async with asyncio.timeout(read_timeout):
            async for chunk in request.content.iter_any():
                sent += len(chunk)
                if max_body and sent > max_body:
                    raise _too_large(max_body)
                await connection.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                await connection.write(b"0\r\n\r\n")
    except TimeoutError:
        raise _too_slow(read_timeout) from None


async def exchange(
    pool: UpstreamPool,
    head: bytes,
    body: bytes | None,
    request: ClientRequest | None,
    *,
    max_body: int = 0,
    read_timeout: float | None = 60.0,
    chunked: bool = False,
    deadline: float | None = None,
) -> tuple[UpstreamConnection, ResponseHead]:
    """Send a request on a pooled connection and read the response head.

    ``body`` None streams ``request``'s body: chunk-encoded when ``chunked`` (``head`` must say so), else raw
    under the Content-Length in ``head``. A pooled connection the upstream closed while idle fails before any
    response byte: an idempotent request whose body is in memory is then sent once more on a new connection.
    Connect failures propagate as OSError (ConnectionRefusedError when refused) so the caller can pick another
    replica. ``deadline`` (a loop time) bounds the exchange: past it, TimeoutError; it stays on the connection
    (``connection.deadline``) for the rest of the answer until the connection goes back to the pool.
    """
    method = request.method if request is not None else ""
    while True:
        connection = await pool.connect(deadline)
        connection.deadline = deadline
        try:
            if body is None:
                assert request is not None
                # The client's body as it comes: its waits are on the client, so the deadline needs a timer here.
                async with asyncio.timeout_at(deadline):
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
            raise UpstreamBrokenError(f"the connection broke before an answer: {exc}") from None
        except UpstreamProtocolError as exc:
            connection.close()
            raise UpstreamBadAnswerError(f"unusable answer: {exc}") from None
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
        raise UpstreamBadAnswerError(f"unusable answer: {exc}") from None
    except OSError as exc:  # UpstreamClosedError included
        connection.close()
        raise UpstreamBrokenError(f"the connection broke mid-answer: {exc}") from None
    except BaseException:
        connection.close()
        raise
    pool.release(connection, head)
    return data


async def proxy(
    request: ClientRequest,
    reply: Reply,
    pool: UpstreamPool,
    head: bytes,
    body: bytes | None,
    *,
    deadline: float | None,
    max_body: int,
    read_timeout: float | None,
    write_timeout: float | None,
    extra_headers: Headers = (),
    started: float | None = None,
) -> None:
    """:func:`exchange` then :func:`relay`: the whole round trip of a client's request, answered to ``reply``.

    ``body`` is what :func:`read_body` returned (None: stream it), and ``head`` announces :func:`body_length`.
    ``deadline`` (a loop time, None for none) bounds the answer; past it before the response head, or before a
    small answer is read whole, TimeoutError propagates for the caller to word. A small answer is the common
    case: the connection's own deadline covers the exchange and its body, with no timer of its own.
    """
    connection, response_head = await exchange(
        pool,
        head,
        body,
        request,
        max_body=max_body,
        read_timeout=read_timeout,
        chunked=body is None and request.content_length is None,
        deadline=deadline,
    )
    if is_whole(request.method, response_head):
        data = await read_whole(pool, connection, response_head)
        reply.whole(response_head, data, extra_headers, started)
        return
    connection.deadline = None  # a streamed body has deadlines of its own (_stream)
    await _stream(
        request,
        reply,
        pool,
        connection,
        response_head,
        extra_headers,
        None if is_streaming(request, response_head) else deadline,
        write_timeout,
        started,
    )


def is_streaming(request: ClientRequest, head: ResponseHead) -> bool:
    """Server-sent events and NDJSON, asked for or answered: passed through with no deadline on the body."""
    return is_streaming_response(head) or is_streaming_request(request)


async def relay(
    request: ClientRequest,
    reply: Reply,
    pool: UpstreamPool,
    connection: UpstreamConnection,
    head: ResponseHead,
    extra_headers: Headers = (),
    *,
    body_deadline: float | None = None,
    write_timeout: float | None = 60.0,
) -> None:
    """Answer the client (``reply``) with the upstream's response: whole when small and sized, else streamed.

    ``body_deadline`` (a loop time) is when the upstream must have sent the whole body; it does not apply to
    server-sent events and NDJSON. ``write_timeout`` bounds each stalled write to the client (None: no bound).
    """
    if is_whole(request.method, head):
        try:
            async with asyncio.timeout_at(body_deadline):
                data = await read_whole(pool, connection, head)
        except TimeoutError:
            raise AnswerTimeoutError("the upstream did not send its answer in time") from None
        reply.whole(head, data, extra_headers, None)
        return
    if is_streaming(request, head):
        body_deadline = None
    await _stream(request, reply, pool, connection, head, extra_headers, body_deadline, write_timeout, None)


async def _stream(
    request: ClientRequest,
    reply: Reply,
    pool: UpstreamPool,
    connection: UpstreamConnection,
    head: ResponseHead,
    extra_headers: Headers,
    body_deadline: float | None,
    write_timeout: float | None,
    started: float | None,
) -> None:
    loop = asyncio.get_running_loop()

    def writing() -> float | None:
        if write_timeout is None:
            return body_deadline
        limit = loop.time() + write_timeout
        return limit if body_deadline is None else min(limit, body_deadline)

    try:
        async with asyncio.timeout_at(writing()) as timer:
            await reply.start(head, extra_headers, started)
            timer.reschedule(body_deadline)
            async for chunk in connection.body(head):
                timer.reschedule(writing())
                await reply.write(chunk)
                timer.reschedule(body_deadline)
            timer.reschedule(writing())
            await reply.end()
    except (OSError, UpstreamProtocolError, TimeoutError) as exc:
        # Too late for a status: cut the connection so the client sees an incomplete body, not a short one.
        connection.close()
        log.warning("response_aborted", error=repr(exc))
        reply.abort()
        return
    except BaseException:
        connection.close()
        raise
    pool.release(connection, head)
