"""Limits on the clients of an aiohttp listener: a header read timeout, the keep-alive idle timeout, a connection cap.

Why we keep our own rather than aiohttp's alone (aiohttp 3.14, ``web_protocol.RequestHandler``): its only client
timer is ``keepalive_timeout``. It is armed when a connection opens and again after each response, it is not
moved by bytes that arrive, and when it fires it closes the connection only if the handler is waiting for the
next request. So a connection that sends nothing is closed after it, and so is a head still incomplete when it
fires. There is no separate limit on how long a head may take once it has started, and no cap on connections:
``loop.create_server`` accepts as long as the process has descriptors. With one timer, a short value closes
ordinary keep-alive connections early and a long one lets a slowloris client (a header byte a second) hold a
descriptor for as long. Go's ``ReadHeaderTimeout``/``IdleTimeout`` and nginx's ``client_header_timeout``/
``keepalive_timeout`` are two limits for that reason; this module adds the missing one and the cap:

- **idle timeout** (aiohttp's ``keepalive_timeout``, set here): a connection that sends nothing after it opened
  or after a response is closed after it;
- **header timeout** (ours): once the first byte of a request head has arrived, the whole head must arrive
  within it, else the connection is closed (nothing is sent: the client is not reading a response yet). A head
  pipelined behind a request still being handled is left to the idle timeout, which runs from that response;
- **connection cap** (ours): at most ``max_connections`` open connections per listener; one over it gets a
  ``503`` with ``Connection: close`` and is closed. The refusal half-closes and reads and drops what the client
  sends for up to :data:`REFUSAL_LINGER_S`, so the client reads the 503 instead of a reset; more than
  :data:`REFUSALS_LINGERING_MAX` such refusals at once are closed right after the write.

:class:`LimitedSite` is ``aiohttp.web.TCPSite`` with these limits; :class:`ConnectionEvents` lets a daemon count
them in its metrics. Three private names of aiohttp 3.14 are used: the handler is built with the arguments
aiohttp's ``Server`` keeps in ``_kwargs`` (as its ``__call__`` does), and the header timer reads the handler's
``_waiter`` (set while it waits for the next request) and ``_request_count`` (the heads parsed so far). An
aiohttp upgrade that drops them fails at start-up (:func:`_check_aiohttp`, and the ``_kwargs`` read when the site
starts), not on the first slow client; tests/unit/servicekit/test_client_limits.py covers the behaviour over real
sockets on uvloop and asyncio.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from servicekit.lean_server import LeanConnection, LeanServer

REFUSAL_LINGER_S = 1.0
REFUSALS_LINGERING_MAX = 1024
_HANDLER_ATTRIBUTES = ("_waiter", "_request_count")


@dataclass(frozen=True, slots=True)
class ClientLimits:
    header_timeout_s: float
    idle_timeout_s: float
    max_connections: int


class ConnectionEvents(Protocol):
    """What a daemon counts (its metrics): each call is one event on one connection."""

    def connection_opened(self) -> None: ...

    def connection_closed(self) -> None: ...

    def connection_refused(self) -> None: ...

    def header_timed_out(self) -> None: ...


class _NoEvents:
    def connection_opened(self) -> None:
        pass

    def connection_closed(self) -> None:
        pass

    def connection_refused(self) -> None:
        pass

    def header_timed_out(self) -> None:
        pass


def refusal_response(body: str = "too many connections\n", headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """The bytes of the 503 a connection over the cap gets."""
    data = body.encode()
    lines = [
        "HTTP/1.1 503 Service Unavailable",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(data)}",
        "Connection: close",
        "Retry-After: 1",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


class ClientGuard:
    """The limits and the counts of one listener (one serving process)."""

    def __init__(
        self, limits: ClientLimits, events: ConnectionEvents | None = None, *, refusal: bytes | None = None
    ) -> None:
        _check_aiohttp()
        self.limits = limits
        self.events: ConnectionEvents = events or _NoEvents()
        self.refusal = refusal_response() if refusal is None else refusal
        self.open = 0  # connections counted against the cap (from accept to connection_lost)
        self.refused = 0
        self.header_timeouts = 0
        self.lingering = 0  # refused connections still reading the client's last bytes

    def protocol_factory(
        self, server: web.Server, lean: LeanServer | None = None
    ) -> Callable[[], asyncio.BaseProtocol]:
        """A protocol factory for ``loop.create_server``: aiohttp's handler under these limits, or a refusal.
        With ``lean``, a connection starts on servicekit.lean_server, which hands it to that handler when a
        request is not one of its hot paths.

        Connections are counted when accepted, not when their ``connection_made`` runs (the loop may accept a
        whole backlog before it calls any), so the cap holds under a burst.
        """
        loop = asyncio.get_running_loop()
        # The handler arguments aiohttp's own Server.__call__ would use, with our idle timeout.
        kwargs: dict[str, Any] = {**server._kwargs, "keepalive_timeout": self.limits.idle_timeout_s}

        def make() -> asyncio.BaseProtocol:
            if self.open >= self.limits.max_connections:
                self.refused += 1
                self.events.connection_refused()
                return _Refusal(self)
            self.open += 1
            self.events.connection_opened()
            if lean is not None:
                return LeanConnection(lean, aiohttp_handler, self._closed, self._head_timed_out)
            return _LimitedHandler(self, server, loop=loop, **kwargs)

        def aiohttp_handler() -> asyncio.Protocol:
            return _LimitedHandler(self, server, loop=loop, **kwargs)

        return make

    def _closed(self) -> None:
        self.open -= 1
        self.events.connection_closed()

    def _head_timed_out(self) -> None:
        self.header_timeouts += 1
        self.events.header_timed_out()


class _LimitedHandler(RequestHandler):
    """aiohttp's request handler with a header read timer and a place in the connection count."""

    __slots__ = ("_counted", "_guard", "_head_timer", "_heads_at_start")

    def __init__(self, guard: ClientGuard, server: web.Server, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._guard = guard
        self._head_timer: asyncio.TimerHandle | None = None
        self._heads_at_start = 0
        self._counted = True

    def data_received(self, data: bytes) -> None:
        starts_head = self._head_timer is None and self._awaiting_head()
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:  # a head is complete
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
        elif starts_head:
            # These bytes started a request head and did not finish it: the rest is due within the header
            # timeout. (A head that arrives whole, the usual case, costs no timer.)
            self._heads_at_start = heads
            self._head_timer = self._loop.call_later(self._guard.limits.header_timeout_s, self._head_overdue)

    def _awaiting_head(self) -> bool:
        """Whether the handler is between requests, so that arriving bytes are the start of the next head.

        ``start()`` awaits ``_waiter`` only while no request is queued or being handled (body bytes, lingering
        reads and upgraded connections all arrive while it is busy); before ``start()`` first runs, nothing has
        been parsed yet.
        """
        waiter = self._waiter
        if waiter is not None:
            return not waiter.done()
        return self._request_count == 0

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self._request_count == self._heads_at_start and self.transport is not None:
            self._guard._head_timed_out()
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._counted:
            self._counted = False
            self._guard._closed()
        super().connection_lost(exc)


class _Refusal(asyncio.Protocol):
    """A connection over the cap: the 503, a half-close, and the client's bytes read and dropped for a moment."""

    def __init__(self, guard: ClientGuard) -> None:
        self._guard = guard
        self._timer: asyncio.TimerHandle | None = None
        self._lingering = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport subclasses
        transport.write(self._guard.refusal)
        if self._guard.lingering >= REFUSALS_LINGERING_MAX or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering = True
        self._guard.lingering += 1
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request we do not serve

    def eof_received(self) -> bool:
        return False  # the client has read the answer and closed its side: close ours

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._lingering:
            self._lingering = False
            self._guard.lingering -= 1


class LimitedSite(web.BaseSite):
    """``aiohttp.web.TCPSite`` whose connections are under a :class:`ClientGuard`."""

    __slots__ = ("_bound_port", "_guard", "_host", "_lean", "_port", "_reuse_address", "_reuse_port", "_ssl")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ClientGuard,
        *,
        backlog: int = 128,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        ssl_context: ssl.SSLContext | None = None,
        lean: LeanServer | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._lean = lean  # the hot paths' server in front of aiohttp (servicekit.lean_server), if any
        self._ssl = ssl_context  # HTTPS when set
        self._guard = guard
        self._host = host
        self._port = port
        self._reuse_address = reuse_address
        self._reuse_port = reuse_port
        self._bound_port: int | None = None

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl is not None else 'http'}://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (the requested one until started; useful with port 0)."""
        return self._port if self._bound_port is None else self._bound_port

    async def start(self) -> None:
        await super().start()
        handlers = self._runner.server
        assert handlers is not None
        listening = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(handlers, self._lean),
            self._host,
            self._port,
            backlog=self._backlog,
            ssl=self._ssl,
            # A TLS handshake comes before any request head: the header timeout bounds it too.
            ssl_handshake_timeout=self._guard.limits.header_timeout_s if self._ssl is not None else None,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._server = listening
        self._bound_port = int(listening.sockets[0].getsockname()[1])


def _check_aiohttp() -> None:
    """Fail at start-up, not on the first slow client, if aiohttp no longer has what the header timer reads."""
    slots: set[str] = set()
    for cls in RequestHandler.__mro__:
        slots.update(getattr(cls, "__slots__", ()))
    missing = [name for name in _HANDLER_ATTRIBUTES if name not in slots]
    if missing:
        raise RuntimeError(
            f"aiohttp's RequestHandler has no {', '.join(missing)}: servicekit.client_limits needs updating"
        )
