"""A lean HTTP/1.1 client for proxies: pooled keep-alive connections on asyncio.Protocol.

aiohttp's client builds several objects, timers and a connector acquisition per request; in front of a small
function that cost more than the whole server side. This client does only what a proxy needs: write the request
head (built by servicekit.request_head) and body (buffered, or chunked with flow control), parse the response
head, and hand the body back whole or as it arrives, with flow control; servicekit.relay drives it. Connections
go back to the pool when a response was read to its end and neither side asked to close.

Framing follows RFC 9112: no body for HEAD, 1xx, 204 and 304; else chunked, else Content-Length, else until the
upstream closes. Interim 1xx responses other than 101 are skipped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

from servicekit.headers import raw_header

MAX_HEAD = 64 * 1024  # a response head larger than this is refused
READ_HIGH_WATER = 256 * 1024  # pause reading from the upstream above this many buffered bytes
IDLE_MAX = 256  # idle connections kept
# An idle connection older than this is closed, not reused: below the 75 s idle timeout of our own listeners
# (servicekit.client_limits) and as nginx's upstream keepalive_timeout, so we close first and never send a request
# on a connection the server is closing at that moment (which only idempotent requests could survive).
IDLE_KEEP_S = 60.0


_FRAMING_NAME_LENGTHS = frozenset({len(b"content-length"), len(b"transfer-encoding"), len(b"connection")})


class UpstreamProtocolError(Exception):
    """The upstream answered something that is not HTTP/1.1 we can pass on."""


class UpstreamClosedError(ConnectionError):
    """The upstream closed the connection before the response was complete."""

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class UpstreamUnreachableError(ConnectionError):
    """The TCP connect did not complete within the pool's ``connect_timeout``: nothing was sent."""


@dataclass(slots=True)
class ResponseHead:
    """A response head as the upstream sent it: the header lines stay bytes (``raw_headers``), for the lean server
    writes them on as they came; :attr:`headers` decodes them the first time it is asked (aiohttp's replies)."""

    status: int
    reason: str
    raw_headers: list[tuple[bytes, bytes]]  # names as sent, values without surrounding whitespace, in order
    content_length: int | None  # None: chunked or until close
    chunked: bool
    has_body: bool
    keep_alive: bool
    _decoded: list[tuple[str, str]] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def headers(self) -> list[tuple[str, str]]:
        if self._decoded is None:
            self._decoded = [
                (name.decode("latin-1"), value.decode("utf-8", "surrogateescape")) for name, value in self.raw_headers
            ]
        return self._decoded

    def header(self, lower_name: bytes) -> bytes | None:
        """The first value of a header by its lower-case name."""
        return raw_header(self.raw_headers, lower_name)


class UpstreamConnection(asyncio.Protocol):
    """One connection to the upstream; a response is read from it at a time.

    :attr:`deadline` (a loop time; None: none) bounds the exchange in progress: a wait for the upstream (its answer,
    or room to write) past it raises TimeoutError, as ``asyncio.timeout_at`` around the exchange would. It costs no
    timer per request: one timer per connection, armed at the first wait and moved on lazily when it fires before
    the deadline then in force (an ``asyncio.timeout`` per request is a timer armed and cancelled each time, about
    3 µs on uvloop, a tenth of what the gateway spends on a small call).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._reading_paused = False
        self.reused = False
        self.idle_since = 0.0  # loop time it went back to the pool
        self.deadline: float | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when the deadline timer fires

    # -- asyncio.Protocol --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > READ_HIGH_WATER and self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._error = exc
        self._wake()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(exc or ConnectionResetError("upstream connection lost"))

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- use ---------------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and not self._eof

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def write(self, data: bytes) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            raise UpstreamClosedError("upstream connection closed while sending", before_response=True)
        self.transport.write(data)
        if self._drain is not None and not self._drain.done():
            self._watch_deadline()
            await self._drain
            self._check_deadline()

    async def _more(self) -> None:
        """Wait until more data, EOF or an error arrives (TimeoutError past :attr:`deadline`)."""
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        self._watch_deadline()
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        self._check_deadline()

    # -- the deadline --------------------------------------------------------------------------------------

    def _watch_deadline(self) -> None:
        """Before a wait: TimeoutError if the deadline has passed, else make sure the timer fires by then."""
        deadline = self.deadline
        if deadline is None:
            return
        if self.loop.time() >= deadline:
            raise TimeoutError
        if self._deadline_timer is None or deadline < self._timer_at:
            if self._deadline_timer is not None:
                self._deadline_timer.cancel()
            self._timer_at = deadline
            self._deadline_timer = self.loop.call_at(deadline, self._deadline_due)

    def _check_deadline(self) -> None:
        """After a wait: TimeoutError if it ended because the deadline passed."""
        if self.deadline is not None and self.loop.time() >= self.deadline:
            raise TimeoutError

    def _deadline_due(self) -> None:
        self._deadline_timer = None
        deadline = self.deadline
        if deadline is None:
            return  # no exchange under a deadline now: armed again by the next wait under one
        if deadline > self.loop.time():
            # A later exchange's deadline (the timer was armed for an earlier one): wait on for that one.
            self._timer_at = deadline
            self._deadline_timer = self.loop.call_at(deadline, self._deadline_due)
            return
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)  # (the writer sees the deadline has passed)

    async def read_head(self, method: str) -> ResponseHead:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            while end < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise UpstreamProtocolError("response head too large")
                if self._eof:
                    raise UpstreamClosedError(
                        "upstream closed the connection before answering", before_response=not self._buffer
                    )
                await self._more()
                end = self._buffer.find(b"\r\n\r\n")
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            parsed = _parse_head(head, method)
            if 100 <= parsed.status < 200 and parsed.status != 101:
                continue  # interim response (100 Continue, 103 Early Hints)
            return parsed

    async def body(self, head: ResponseHead) -> AsyncIterator[bytes]:
        """The response body as it arrives (de-chunked)."""
        if not head.has_body:
            return
        if head.chunked:
            async for piece in self._chunked():
                yield piece
        elif head.content_length is not None:
            async for piece in self._exactly(head.content_length):
                yield piece
        else:
            while True:
                if self._buffer:
                    piece = bytes(self._buffer)
                    self._buffer.clear()
                    yield piece
                elif self._eof:
                    return
                else:
                    await self._more()

    async def read_body(self, head: ResponseHead) -> bytes:
        if head.content_length is not None and len(self._buffer) >= head.content_length:
            data = bytes(self._buffer[: head.content_length])  # the common case: it all came with the head
            del self._buffer[: head.content_length]
            return data
        return b"".join([piece async for piece in self.body(head)])

    async def _chunked(self) -> AsyncIterator[bytes]:
        while True:
            line = await self._line()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise UpstreamProtocolError(f"bad chunk size {size_text!r}") from None
            if size == 0:
                while await self._line():  # trailers, up to the empty line
                    pass
                return
            async for piece in self._exactly(size):
                yield piece
            if (await self._line()) != b"":
                raise UpstreamProtocolError("chunk not followed by CRLF")

    async def _exactly(self, length: int) -> AsyncIterator[bytes]:
        """The next ``length`` body bytes, in pieces as they arrive."""
        remaining = length
        while remaining:
            if not self._buffer:
                if self._eof:
                    raise UpstreamClosedError("upstream closed mid-body", before_response=False)
                await self._more()
                continue
            piece = bytes(self._buffer[:remaining])
            del self._buffer[: len(piece)]
            remaining -= len(piece)
            yield piece

    async def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD:
                raise UpstreamProtocolError("chunk line too long")
            if self._eof:
                raise UpstreamClosedError("upstream closed mid-chunk", before_response=False)
            await self._more()
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line


def _parse_head(head: bytes, method: str) -> ResponseHead:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise UpstreamProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise UpstreamProtocolError(f"bad status {parts[1][:20]!r}") from None
    reason = parts[2].decode("latin-1") if len(parts) == 3 else ""
    headers: list[tuple[bytes, bytes]] = []
    content_length: int | None = None
    chunked = False
    keep_alive = parts[0] == b"HTTP/1.1"
    for raw in lines[1:]:
        name, sep, value = raw.partition(b":")
        if not sep:
            raise UpstreamProtocolError(f"bad header line {raw[:80]!r}")
        name = name.strip()
        value = value.strip()
        if len(name) in _FRAMING_NAME_LENGTHS:  # (most names are not one of these three: no lower() for them)
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit():  # (int() would take "+1", "1_0" and spaces)
                    raise UpstreamProtocolError(f"bad Content-Length {value[:20].decode('latin-1')!r}")
                length = int(value)
                if content_length is not None and content_length != length:
                    raise UpstreamProtocolError("conflicting Content-Length headers")
                content_length = length
            elif lower == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif lower == b"connection":
                tokens = {token.strip().lower() for token in value.split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        headers.append((name, value))
    has_body = not (method == "HEAD" or status < 200 or status in (204, 304))
    if chunked:
        content_length = None
    elif has_body and content_length is None:
        keep_alive = False  # the body ends when the upstream closes
    return ResponseHead(status, reason, headers, content_length, chunked, has_body, keep_alive)


class UpstreamPool:
    """Keep-alive connections to one host:port; after :meth:`close`, released connections are closed too."""

    def __init__(self, host: str, port: int, *, connect_timeout: float | None = None) -> None:
        self.host = host
        self.port = port
        # A connect on a local bridge takes well under a millisecond; one that takes seconds will not complete
        # (the bridge is gone, the replica's veth went with its container): fail fast instead of holding the caller.
        self.connect_timeout = connect_timeout
        self._idle: deque[UpstreamConnection] = deque()
        self.closed = False

    async def connect(self, deadline: float | None = None) -> UpstreamConnection:
        """An idle connection, or a new one; ``deadline`` (a loop time) bounds a new connect too: TimeoutError when
        it comes before the ``connect_timeout``, UpstreamUnreachableError when that comes first."""
        loop = asyncio.get_running_loop()
        while self._idle:
            connection = self._idle.pop()
            if loop.time() - connection.idle_since > IDLE_KEEP_S:
                connection.close()  # the newest idle one is too old, so are the others
                self._close_idle()
                break
            if connection.usable:
                connection.reused = True
                return connection
        limit = None if self.connect_timeout is None else loop.time() + self.connect_timeout
        by_deadline = deadline is not None and (limit is None or deadline < limit)
        try:
            async with asyncio.timeout_at(deadline if by_deadline else limit):
                _, connection = await loop.create_connection(UpstreamConnection, self.host, self.port)
        except TimeoutError:
            if by_deadline:
                raise
            raise UpstreamUnreachableError(
                f"no connection to {self.host}:{self.port} within {self.connect_timeout:g}s"
            ) from None
        return connection

    def release(self, connection: UpstreamConnection, head: ResponseHead) -> None:
        """Return a connection whose response was read to its end."""
        connection.deadline = None
        if head.keep_alive and connection.usable and not self.closed and len(self._idle) < IDLE_MAX:
            connection.idle_since = connection.loop.time()
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        self.closed = True
        self._close_idle()

    def _close_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()
