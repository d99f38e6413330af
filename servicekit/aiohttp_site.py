"""aiohttp's listeners under servicekit.client_limits: :class:`LimitedSite` is ``aiohttp.web.TCPSite`` whose
connections are under a ``ClientGuard`` (and optionally start on servicekit.lean_server, which hands them to
aiohttp's request handler when a request is not one of its hot paths).

Three private names of aiohttp 3.14 are used: the handler is built with the arguments aiohttp's ``Server`` keeps
in ``_kwargs`` (as its ``__call__`` does), and the header timer reads the handler's ``_waiter`` (set while it
waits for the next request) and ``_request_count`` (the heads parsed so far). An aiohttp upgrade that drops them
fails at start-up (:func:`_check_aiohttp`, and the ``_kwargs`` read when the site starts), not on the first slow
client; tests/unit/servicekit/test_client_limits.py covers the behaviour over real sockets on uvloop and asyncio.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from servicekit.client_limits import ClientGuard
from servicekit.lean_server import LeanConnection, LeanServer

_HANDLER_ATTRIBUTES = ("_waiter", "_request_count")


def protocol_factory(
    guard: ClientGuard, server: web.Server, lean: LeanServer | None = None
) -> Callable[[], asyncio.BaseProtocol]:
    """A protocol factory for ``loop.create_server``: aiohttp's handler under these limits, or a refusal.
    With ``lean``, a connection starts on servicekit.lean_server, which hands it to that handler when a
    request is not one of its hot paths.

    Connections are counted when accepted, not when their ``connection_made`` runs (the loop may accept a
    whole backlog before it calls any), so the cap holds under a burst.
    """
    loop = asyncio.get_running_loop()
    # The handler arguments aiohttp's own Server.__call__ would use, with our idle timeout.
    kwargs: dict[str, Any] = {**server._kwargs, "keepalive_timeout": guard.limits.idle_timeout_s}

    def make() -> asyncio.BaseProtocol:
        refusal = guard.accept()
        if refusal is not None:
            return refusal
        if lean is not None:
            return LeanConnection(lean, aiohttp_handler, guard.closed, guard.head_timed_out)
        return _LimitedHandler(guard, server, loop=loop, **kwargs)

    def aiohttp_handler() -> asyncio.Protocol:
        return _LimitedHandler(guard, server, loop=loop, **kwargs)

    return make


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
            self._guard.head_timed_out()
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._counted:
            self._counted = False
            self._guard.closed()
        super().connection_lost(exc)


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
        _check_aiohttp()
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
            protocol_factory(self._guard, handlers, self._lean),
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
