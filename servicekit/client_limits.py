"""Limits on the clients of a listener: a header read timeout, the keep-alive idle timeout, a connection cap.

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

:class:`LeanSite` is a listener of servicekit.lean_server alone under these limits; servicekit.aiohttp_site has
aiohttp's (``LimitedSite``, aiohttp's ``TCPSite`` with them). :class:`ConnectionEvents` lets a daemon count them
in its metrics. No aiohttp here: the watchdog's http and python modes serve without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, cast

from servicekit.lean_server import LeanConnection, LeanServer

REFUSAL_LINGER_S = 1.0
REFUSALS_LINGERING_MAX = 1024


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
        self.limits = limits
        self.events: ConnectionEvents = events or _NoEvents()
        self.refusal = refusal_response() if refusal is None else refusal
        self.open = 0  # connections counted against the cap (from accept to connection_lost)
        self.refused = 0
        self.header_timeouts = 0
        self.lingering = 0  # refused connections still reading the client's last bytes

    def accept(self) -> asyncio.Protocol | None:
        """Count a connection the loop accepted; the refusal instead when the cap is reached.

        Connections are counted when accepted, not when their ``connection_made`` runs (the loop may accept a
        whole backlog before it calls any), so the cap holds under a burst.
        """
        if self.open >= self.limits.max_connections:
            self.refused += 1
            self.events.connection_refused()
            return _Refusal(self)
        self.open += 1
        self.events.connection_opened()
        return None

    def lean_factory(self, lean: LeanServer) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server``: servicekit.lean_server alone (no aiohttp behind it)
        under these limits, or a refusal."""

        def make() -> asyncio.Protocol:
            return self.accept() or LeanConnection(lean, None, self.closed, self.head_timed_out)

        return make

    def closed(self) -> None:
        self.open -= 1
        self.events.connection_closed()

    def head_timed_out(self) -> None:
        self.header_timeouts += 1
        self.events.header_timed_out()


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


class LeanSite:
    """A listener served by servicekit.lean_server alone, under a :class:`ClientGuard` (the watchdog's http and
    python modes, its metrics port: no aiohttp in the process)."""

    def __init__(
        self,
        lean: LeanServer,
        host: str,
        port: int,
        guard: ClientGuard,
        *,
        backlog: int = 128,
        reuse_port: bool | None = None,
    ) -> None:
        self.lean = lean
        self._guard = guard
        self._host = host
        self._port = port
        self._backlog = backlog
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one until started; useful with port 0)."""
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.lean_factory(self.lean),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )

    async def stop(self, drain_timeout_s: float) -> None:
        """Stop accepting, close idle connections, and give busy ones up to ``drain_timeout_s`` to finish."""
        if self._server is not None:
            self._server.close()
        await self.lean.shutdown(drain_timeout_s)
