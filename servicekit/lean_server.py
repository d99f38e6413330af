"""The hot paths' HTTP/1.1 server: an ``asyncio.Protocol`` on httptools (llhttp, the parser Node uses), in front
of aiohttp on the same listener.

Why our own: measured here (uvloop, one process, a 20-byte answer) aiohttp's server side answers ~17,000
requests/s and adds ~150 µs at one connection; a Protocol on httptools answers ~39,000 and ~35 µs. In front of a
function that was most of what the gateway and the watchdog cost. aiohttp stays for everything else.

Every connection starts here. For each request head, ``route`` returns the handler of a hot path (the gateway's
``/function/``, the watchdog's function calls) or None. None hands the connection to aiohttp's request handler
for the rest of its life:

- when it is the connection's first request (a browser on ``/ui/``, faas-cli on ``/system``), the bytes received
  so far go to aiohttp as they came and the transport is given to it: from then on this module is out of the way;
- later on a connection (``/function/`` first, then ``/system``), llhttp has already consumed bytes past the head,
  so this parser stays in front and passes aiohttp what it parsed, written out again (head, body — chunked again
  if it was —, and any request after it); an upgrade's bytes after its head go through unparsed, and the
  transport is then given to aiohttp.
Upgrades (websockets) are always aiohttp's.

Without aiohttp (``fallback`` None: the watchdog's http and python modes, its metrics port), this server answers
every request: ``route`` returning None is a 404, and an upgrade is routed too. Once an upgrade's head is parsed
the connection is no longer HTTP: what the client sends after it arrives on ``request.upgraded`` (bytes as they
came, for a tunnel to the upstream: servicekit.tunnel), and the connection closes when its handler returns.

A lean request is answered through :class:`LeanReply` (servicekit.client_side.Reply): whole answers in one write
with ``Content-Length``, streamed ones chunked (or as the upstream framed them). Requests on a connection are
answered in order, one at a time (pipelined ones wait in a queue; reading pauses when it grows). The client limits
are the same as aiohttp's listeners get (servicekit.client_limits): the header timeout from a head's first byte,
the idle timeout between requests, the connection count. :class:`LeanServer` drains on shutdown: idle connections
close at once, busy ones after their answer, all by the timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Final, cast
from urllib.parse import parse_qsl, unquote

import httptools
import structlog
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy, MultiMapping

from servicekit.client_side import Answer, Headers
from servicekit.headers import DURATION, HOP_BY_HOP, duration_header
from servicekit.upstream import ResponseHead

log = structlog.get_logger("lean_server")

READ_HIGH_WATER: Final = 256 * 1024  # request body bytes buffered before reading from the client pauses
MAX_HEAD_BYTES: Final = 64 * 1024  # a longer request head is refused (431), as aiohttp bounds its lines
PIPELINE_MAX: Final = 16  # requests queued behind the one being answered before reading pauses
_HOP_BY_HOP_BYTES: Final = frozenset(h.encode() for h in HOP_BY_HOP)
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_REASONS: Final = {s.value: s.phrase.encode() for s in HTTPStatus}
_DURATION_LOWER: Final = DURATION.lower().encode()

LeanHandler = Callable[["LeanRequest", "LeanReply"], Awaitable[None]]
Router = Callable[["LeanRequest"], LeanHandler | None]
FallbackFactory = Callable[[], asyncio.Protocol]
_NOT_FOUND: Final = b"404 page not found\n"


_DAYS: Final = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS: Final = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


def http_date(second: float) -> bytes:
    """An IMF-fixdate (RFC 9110 §5.6.7), as ``email.utils.formatdate(usegmt=True)`` gives, without importing the
    email package into the watchdog (about 0.3 MB a process)."""
    t = time.gmtime(second)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday],
        t.tm_mday,
        _MONTHS[t.tm_mon - 1],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


class _Date:
    """The ``Date`` header's value, formatted once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = 0
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = http_date(second)
        return self._value


_date = _Date()


class _Body:
    """A request body as it arrives, read by the handler (``request.content``)."""

    __slots__ = ("_buffered", "_chunks", "_connection", "_eof", "_waiter")

    def __init__(self, connection: LeanConnection) -> None:
        self._connection = connection
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_HIGH_WATER:
            self._connection.pause_body()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self) -> None:
        """The client went away: a reader waiting for more gets ConnectionResetError."""
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def complete(self) -> bool:
        return self._eof

    async def _next(self) -> bytes | None:
        while not self._chunks:
            if self._eof:
                return None
            if self._connection.lost:
                raise ConnectionResetError("the client closed the connection while sending its body")
            self._connection.resume_body()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        return chunk

    async def iter_any(self) -> AsyncIterator[bytes]:
        while (chunk := await self._next()) is not None:
            yield chunk

    async def read(self) -> bytes:
        if self._eof and len(self._chunks) <= 1:
            chunk = self._chunks.popleft() if self._chunks else b""
            self._buffered = 0
            return chunk
        return b"".join([chunk async for chunk in self.iter_any()])


class LeanRequest:
    """One request head and its body; the names of ``aiohttp.web.BaseRequest`` (servicekit.client_side)."""

    __slots__ = (
        "_headers",
        "_query",
        "body",
        "chunked",
        "connection",
        "content_length",
        "expect_continue",
        "handler",
        "keep_alive",
        "method",
        "raw_headers",
        "raw_path",
        "remote",
        "secure",
        "transport",
        "upgrade",
        "upgraded",
        "version",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        version: str,
        raw_headers: list[tuple[bytes, bytes]],
        connection: LeanConnection,
        *,
        keep_alive: bool,
        upgrade: bool,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.raw_headers: Sequence[tuple[bytes, bytes]] = raw_headers
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.remote = connection.remote
        self.secure = connection.secure
        self.transport: asyncio.Transport | None = connection.transport
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        for name, value in raw_headers:
            if len(name) == 14 and name.lower() == b"content-length":
                self.content_length = int(value)
            elif len(name) == 17 and name.lower() == b"transfer-encoding":
                self.chunked = value.lower().rstrip().endswith(b"chunked")
            elif len(name) == 6 and name.lower() == b"expect":
                self.expect_continue = value.lower() == b"100-continue"
        if self.chunked:
            self.content_length = None
        self.connection = connection
        self.body = _Body(connection)
        self.upgraded: _Body | None = None  # an upgrade answered here: the client's bytes after its head
        self.handler: LeanHandler | None = None
        self._headers: CIMultiDictProxy[str] | None = None
        self._query: MultiDictProxy[str] | None = None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        if self._headers is None:
            self._headers = CIMultiDictProxy(
                CIMultiDict(
                    (name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
                    for name, value in self.raw_headers
                )
            )
        return self._headers

    @property
    def path(self) -> str:
        path = self.raw_path.partition("?")[0]
        return unquote(path) if "%" in path else path

    @property
    def query(self) -> MultiMapping[str]:
        if self._query is None:
            # (as yarl's ``URL.query``: "+" is a space, blank values kept; yarl is not loaded in the watchdog)
            query = self.raw_path.partition("?")[2]
            self._query = MultiDictProxy(MultiDict(parse_qsl(query, keep_blank_values=True)))
        return self._query

    @property
    def host(self) -> str | None:
        return self.headers.get("Host")

    @property
    def body_exists(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def content(self) -> _Body:
        return self.body

    async def read(self) -> bytes:
        return await self.body.read()

    def clone(self, *, rel_url: str) -> LeanRequest:
        """This request's head at the target ``rel_url``, without a body (as aiohttp's ``clone``: the ready probe)."""
        unframed = [
            (name, value)
            for name, value in self.raw_headers
            if name.lower() not in (b"content-length", b"transfer-encoding", b"expect")
        ]
        clone = LeanRequest(
            self.method, rel_url, self.version, unframed, self.connection, keep_alive=self.keep_alive, upgrade=False
        )
        clone.body.feed_eof()
        return clone


class LeanReply:
    """A :class:`~servicekit.client_side.Reply` written straight to the client's connection."""

    __slots__ = ("_chunked", "_connection", "_dated", "_head_only", "_request", "started", "status")

    def __init__(self, connection: LeanConnection, request: LeanRequest) -> None:
        self._connection = connection
        self._request = request
        self._head_only = request.method == "HEAD"
        self._chunked = False
        self._dated = False  # the upstream's answer has a Date: ours is not added
        self.started = False
        self.status = 0

    def _status_line(self, status: int, reason: str | None) -> bytes:
        self.started = True
        self.status = status
        phrase = reason.encode("latin-1", "replace") if reason else _REASONS.get(status, b"Unknown")
        version = b"1.0" if self._request.version == "1.0" else b"1.1"  # as aiohttp and Go answer 1.0 clients
        return b"HTTP/%s %d %s\r\n" % (version, status, phrase)

    def _closing_line(self, dated: bool = False) -> bytes:
        """``Connection`` when it is not the default, and ``Date`` unless the answer has one (``dated``)."""
        connection = self._connection
        date = b"" if dated else b"Date: " + _date.now() + b"\r\n"
        # An answer that goes out before its request's body has all arrived closes the connection: the rest of the
        # body is not read, so the next request cannot be found (as Go's net/http does).
        if not self._request.keep_alive or connection.closing or not self._request.body.complete:
            connection.close_after = True
            return b"Connection: close\r\n" + date
        if self._request.version == "1.0":
            return b"Connection: keep-alive\r\n" + date
        return date

    def send(self, answer: Answer) -> None:
        data = answer.body
        parts = [self._status_line(answer.status, answer.reason)]
        dated = False
        for name, value in answer.headers.items():
            lower = name.lower()
            if lower not in ("content-length", "transfer-encoding", "connection"):
                dated = dated or lower == "date"
                parts.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("utf-8", "surrogateescape")))
        parts.append(b"Content-Length: %d\r\n" % len(data))
        parts.append(self._closing_line(dated))
        parts.append(b"\r\n")
        if not self._head_only:
            parts.append(data)
        self._connection.write(b"".join(parts))

    def _head_lines(
        self, head: ResponseHead, extra_headers: Headers, started: float | None, keep_length: bool
    ) -> list[bytes]:
        parts = [self._status_line(head.status, head.reason)]
        dropped: set[bytes] | None = None
        # The service's own headers replace the upstream's of the same name (as aiohttp's ``headers[name] =``).
        own = {name.lower().encode("latin-1") for name, _ in extra_headers}
        if started is not None:
            own.add(_DURATION_LOWER)
        for raw, value in head.raw_headers:
            lower = raw.lower()
            if lower in _HOP_BY_HOP_BYTES:
                if lower == b"connection":
                    tokens = {t.strip().lower() for t in value.split(b",")} - {b"close", b"keep-alive", b""}
                    dropped = tokens if dropped is None else dropped | tokens
                continue
            if lower == b"content-length" and not keep_length:
                continue
            if lower in own:
                continue
            if lower == b"date":
                self._dated = True
            parts.append(raw + b": " + value + b"\r\n")
        if dropped:
            parts = [parts[0], *(p for p in parts[1:] if p.split(b":", 1)[0].lower() not in dropped)]
        for own_name, own_value in extra_headers:
            parts.append(b"%s: %s\r\n" % (own_name.encode("latin-1"), own_value.encode("utf-8", "surrogateescape")))
        if started is not None:
            parts.append(b"%s: %s\r\n" % (DURATION.encode(), duration_header(started).encode()))
        return parts

    def whole(self, head: ResponseHead, data: bytes, extra_headers: Headers, started: float | None) -> None:
        parts = self._head_lines(head, extra_headers, started, keep_length=False)
        body = data if head.has_body else b""
        if head.has_body:
            parts.append(b"Content-Length: %d\r\n" % len(body))
        parts.append(self._closing_line(self._dated))
        parts.append(b"\r\n")
        if not self._head_only:
            parts.append(body)
        self._connection.write(b"".join(parts))

    async def start(self, head: ResponseHead, extra_headers: Headers, started: float | None) -> None:
        parts = self._head_lines(head, extra_headers, started, keep_length=True)
        sized = head.content_length is not None and not head.chunked
        if head.has_body and not sized and not self._head_only:
            if self._request.version == "1.0":
                self._connection.close_after = True  # the body ends when we close
            else:
                self._chunked = True
                parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(self._closing_line(self._dated))
        parts.append(b"\r\n")
        self._connection.write(b"".join(parts))
        await self._connection.drain()

    async def write(self, chunk: bytes) -> None:
        if self._head_only or not chunk:
            return
        connection = self._connection
        connection.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self._chunked else chunk)
        await connection.drain()

    async def end(self) -> None:
        if self._chunked:
            self._connection.write(b"0\r\n\r\n")
        await self._connection.drain()

    def abort(self) -> None:
        self._connection.abort()

    async def pass_through(self, status: int, data: bytes) -> None:
        """Bytes of an upgrade's answer as the upstream wrote them, head and all (servicekit.tunnel): from the
        first, the connection closes after this request."""
        if not self.started:
            self.started = True
            self._connection.close_after = True
        if not self.status:
            self.status = status  # (0 until the status line has arrived whole)
        if data:
            self._connection.write(data)
            await self._connection.drain()


class LeanServer:
    """The lean connections of one listener: counts for the drain on shutdown."""

    def __init__(self, route: Router, *, header_timeout_s: float, idle_timeout_s: float) -> None:
        self.route = route
        self.header_timeout_s = header_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.connections: set[LeanConnection] = set()
        self.closing = False
        self._all_closed: asyncio.Event | None = None

    def forget(self, connection: LeanConnection) -> None:
        """A connection closed or went to aiohttp."""
        self.connections.discard(connection)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    async def shutdown(self, timeout_s: float) -> None:
        """Close idle connections now, busy ones after their answer, every one by ``timeout_s``."""
        self.closing = True
        self._all_closed = asyncio.Event()
        for connection in list(self.connections):
            connection.close_if_idle()
        if self.connections:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._all_closed.wait()
            except TimeoutError:
                log.warning("drain_timed_out", connections=len(self.connections))
        for connection in list(self.connections):
            connection.abort()


class LeanConnection(asyncio.Protocol):
    """One client connection, until a request that is not a hot path hands it to aiohttp (``fallback``; None: every
    request is answered here)."""

    def __init__(
        self,
        server: LeanServer,
        fallback: FallbackFactory | None,
        on_lost: Callable[[], None],
        on_head_overdue: Callable[[], None],
    ) -> None:
        self._server = server
        self._fallback_factory = fallback
        self._on_lost = on_lost  # (the count of the listener's connections; aiohttp's handler calls it once it has it)
        self._on_head_overdue = on_head_overdue
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.secure = False
        self.lost = False
        self.close_after = False
        self._loop = asyncio.get_running_loop()
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._receiving: LeanRequest | None = None  # the request whose body is arriving
        self._queue: deque[LeanRequest] = deque()
        self._task: asyncio.Task[None] | None = None
        # Bytes received before the first head completed, for aiohttp if that request is its (with a fallback).
        self._first: list[bytes] | None = [] if fallback is not None else None
        self._handed: asyncio.Protocol | None = None  # aiohttp's handler once handed over
        self._handing: list[bytes] | None = None  # re-written bytes for aiohttp (handing over mid-connection)
        self._handing_chunked = False
        self._upgraded: _Body | None = None  # an upgrade answered here: the bytes after its head go there
        self._raw_after_handover = False  # an upgrade was handed over: what follows it is not HTTP
        self._in_head = False  # a head has begun and is not complete
        self._head_bytes = 0  # bytes received while a head was incomplete (more than its length: a bound)
        self._idle_since = 0.0
        self._reading_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    @property
    def closing(self) -> bool:
        return self._server.closing

    # -- asyncio.Protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else None
        self.secure = transport.get_extra_info("sslcontext") is not None
        self._server.connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        # (Once aiohttp has the transport, set_protocol sends it the bytes: none come here after that.)
        if self._upgraded is not None:
            self._upgraded.feed(data)
            return
        if self._raw_after_handover and self._first is None:
            assert self._handing is not None
            self._handing.append(data)  # an upgraded connection's bytes, for aiohttp once the answer before it is out
            self.pause_body()
            return
        if self._first is not None:
            self._first.append(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._handing is not None:
                self._handing.append(data[upgrade.args[0] :])
                self._raw_after_handover = True
            elif (
                self._queue and (upgraded := self._queue[-1].upgraded) is not None and (rest := data[upgrade.args[0] :])
            ):
                upgraded.feed(rest)  # bytes of the new protocol that came with the head
        except httptools.HttpParserError as exc:
            if self._first is not None and not self._queue and self._task is None:
                self._hand_over_raw()  # aiohttp answers a malformed first request as it always has
                return
            log.info("bad_request", error=str(exc))
            self._bad_request()
            return
        if self._first is not None and self._handing is not None:
            self._hand_over_raw()
            return
        if self._handing is not None and self._task is None and not self._queue:
            self._flush_handover()
        elif self._handing is not None:
            self.pause_body()  # aiohttp's requests wait for the lean answer before them: read no further meanwhile
        elif self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431, b"request head over %d bytes\n" % MAX_HEAD_BYTES)
                return
        if self._in_head and self._head_timer is None and self._handed is None:
            # These bytes began a head and did not finish it: the rest is due within the header timeout. (A head
            # that arrives whole, the usual case, costs no timer.)
            self._head_timer = self._loop.call_later(self._server.header_timeout_s, self._head_overdue)

    def eof_received(self) -> bool | None:
        if self._handed is not None:
            return self._handed.eof_received()
        if self._upgraded is not None:
            self._upgraded.feed_eof()
            return True  # half-closed: the upstream's answer may still be coming
        if self._receiving is not None:
            self._receiving.body.fail()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._cancel_timers()
        self._server.forget(self)
        if self._receiving is not None:
            self._receiving.body.fail()
        if self._upgraded is not None:
            self._upgraded.fail()
        for request in self._queue:
            request.body.fail()
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError("the client closed the connection"))
        if self._task is not None:
            self._task.cancel()  # as aiohttp does: the client is gone, stop working for it
        if self._handed is not None:
            self._handed.connection_lost(exc)
        else:
            self._on_lost()

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._handed is not None:
            self._handed.pause_writing()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self._handed is not None:
            self._handed.resume_writing()

    # -- httptools callbacks -------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        parser = self._parser
        method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        if self._handing is not None:
            self._rewrite_head(method, version)
            return
        request = LeanRequest(
            method,
            self._url.decode("utf-8", "surrogateescape"),
            version,
            self._headers,
            self,
            keep_alive=parser.should_keep_alive(),
            upgrade=parser.should_upgrade(),
        )
        fallback = self._fallback_factory
        handler = None if request.upgrade and fallback is not None else self._server.route(request)
        if handler is None:
            if fallback is None:
                handler = _not_found
            else:
                self._handing = []
                self._rewrite_head(method, version)
                return
        if request.upgrade:
            # What follows the head is not HTTP: it goes to the handler as it comes (llhttp stops parsing here).
            self._upgraded = request.upgraded = _Body(self)
            self.close_after = True
        self._first = None
        request.handler = handler
        self._receiving = request
        self._queue.append(request)
        if len(self._queue) > PIPELINE_MAX:
            self.pause_body()
        if self._task is None:
            self._start_next()

    def on_body(self, body: bytes) -> None:
        if self._handing is not None:
            if self._handing_chunked:
                self._handing.append(b"%x\r\n%s\r\n" % (len(body), body))
            else:
                self._handing.append(body)
        elif self._receiving is not None:
            self._receiving.body.feed(body)

    def on_message_complete(self) -> None:
        if self._handing is not None:
            if self._handing_chunked:
                self._handing.append(b"0\r\n\r\n")
        elif self._receiving is not None:
            self._receiving.body.feed_eof()
            self._receiving = None

    # -- handing over to aiohttp ---------------------------------------------------------------------------

    def _rewrite_head(self, method: str, version: str) -> None:
        assert self._handing is not None
        chunked = False
        lines = [f"{method} ".encode() + self._url + f" HTTP/{version}\r\n".encode()]
        for name, value in self._headers:
            if name.lower() == b"transfer-encoding" and value.lower().rstrip().endswith(b"chunked"):
                chunked = True
            lines.append(name + b": " + value + b"\r\n")
        lines.append(b"\r\n")
        self._handing_chunked = chunked
        self._handing.append(b"".join(lines))

    def _hand_over_raw(self) -> None:
        """The connection's first request is aiohttp's: it gets the bytes as they came, and the transport."""
        assert self.transport is not None
        assert self._first is not None
        data = b"".join(self._first)
        self._first = None
        self._handing = None
        handler = self._adopt()
        self.transport.set_protocol(handler)
        handler.data_received(data)

    def _flush_handover(self) -> None:
        """Mid-connection: aiohttp gets what this parser re-wrote, and the transport once the rest is raw."""
        assert self.transport is not None
        assert self._handing is not None
        if self._handed is None:
            self._adopt()
        handed = self._handed
        assert handed is not None
        data = b"".join(self._handing)
        self._handing = None if self._raw_after_handover else []
        if self._raw_after_handover:
            self.transport.set_protocol(handed)
        self.resume_body()
        if data:
            handed.data_received(data)

    def _adopt(self) -> asyncio.Protocol:
        assert self.transport is not None
        assert self._fallback_factory is not None
        self._cancel_timers()
        self._server.forget(self)
        handler = self._fallback_factory()
        handler.connection_made(self.transport)
        self._handed = handler
        return handler

    # -- answering -----------------------------------------------------------------------------------------

    def _start_next(self) -> None:
        request = self._queue[0]
        assert request.handler is not None
        self._task = self._loop.create_task(self._answer(request, request.handler))

    async def _answer(self, request: LeanRequest, handler: LeanHandler) -> None:
        reply = LeanReply(self, request)
        if request.expect_continue and request.version == "1.1" and not request.body.complete:
            self.write(_CONTINUE)
        try:
            await handler(request, reply)
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("request_crashed", method=request.method, path=request.path)
            if reply.started:
                self.abort()
                return
            reply.send(Answer.text(500, "internal server error\n"))
        finally:
            self._task = None
        if not reply.started:
            log.error("request_unanswered", method=request.method, path=request.path)
            reply.send(Answer.text(500, "internal server error\n"))
        self._finished(request)

    def _finished(self, request: LeanRequest) -> None:
        if self.lost:
            return
        self._queue.popleft()
        if not request.body.complete:
            self.close_after = True  # the rest of its body is unread: the next request cannot be found
        if self.close_after:
            assert self.transport is not None
            self.transport.close()
            return
        if self._queue:
            self.resume_body()
            self._start_next()
        elif self._handing is not None:
            self._flush_handover()
        else:
            self.resume_body()
            self._arm_idle()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.lost:
            raise ConnectionResetError("the client closed the connection")
        if self._writing_paused:
            self._drained = self._loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def close_if_idle(self) -> None:
        if self._task is None and not self._queue and self._handed is None and self.transport is not None:
            self.transport.close()

    def _bad_request(self) -> None:
        self._refuse(400, b"bad request\n")

    def _refuse(self, status: int, body: bytes) -> None:
        """A request this server cannot take: the status, and the connection closed after it (and after the answer
        in progress, if any)."""
        assert self.transport is not None
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._task is not None or self._queue:
            # Answers go out in order: the one in progress is the last; nothing more is read.
            self.close_after = True
            self.pause_body()
            return
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, _REASONS.get(status, b"Error"), len(body), body)
        )
        self.transport.close()

    # -- flow control and timers ---------------------------------------------------------------------------

    def pause_body(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.lost:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_body(self) -> None:
        if self._reading_paused and self.transport is not None and not self.lost and len(self._queue) <= PIPELINE_MAX:
            self._reading_paused = False
            self.transport.resume_reading()

    def _arm_idle(self) -> None:
        """Idle from now: one timer per connection, moved on lazily (not a new timer after every answer)."""
        if self._server.closing:
            self.close_if_idle()
            return
        self._idle_since = self._loop.time()
        if self._idle_timer is None:
            self._idle_timer = self._loop.call_later(self._server.idle_timeout_s, self._idle_overdue)

    def _idle_overdue(self) -> None:
        self._idle_timer = None
        if self._task is not None or self._queue or self._receiving is not None or self._in_head:
            return  # busy: armed again when its answer is written
        remaining = self._idle_since + self._server.idle_timeout_s - self._loop.time()
        if remaining > 0.001:
            self._idle_timer = self._loop.call_later(remaining, self._idle_overdue)
        else:
            self.close_if_idle()

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self.transport is not None and self._handed is None and self._in_head:
            self._on_head_overdue()
            self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._idle_timer = None


async def _not_found(request: LeanRequest, reply: LeanReply) -> None:
    """Without aiohttp behind, a request no route takes (Go's net/http answer)."""
    reply.send(Answer(404, _NOT_FOUND, CIMultiDict({"Content-Type": "text/plain; charset=utf-8"})))
