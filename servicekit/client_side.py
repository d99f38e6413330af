"""The client's side of one proxied exchange, whichever server parsed it: its request, and where the answer goes.

Two servers parse requests: aiohttp (every route) and servicekit.lean_server (the hot paths: the gateway's
``/function/`` and the watchdog's function calls). The proxies (servicekit.relay, gateway/proxy.py, the
watchdog's executors) are written once against these protocols:

- :class:`ClientRequest`: the part of ``aiohttp.web.BaseRequest`` they read; aiohttp's request has it as it is,
  and ``lean_server.LeanRequest`` has the same names.
- :class:`Reply`: where the answer goes. The lean server writes it to the connection as it comes; for aiohttp,
  :class:`AiohttpReply` builds the response object the handler returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

from servicekit.headers import DURATION, HOP_BY_HOP, duration_header
from servicekit.upstream import ResponseHead

Headers = Iterable[tuple[str, str]]


class BodySource(Protocol):
    def iter_any(self) -> AsyncIterator[bytes]:
        """The request body in pieces as they arrive."""
        ...


class ClientRequest(Protocol):
    """What the proxies read of a client's request (the names of ``aiohttp.web.BaseRequest``)."""

    @property
    def method(self) -> str: ...
    @property
    def raw_path(self) -> str:
        """The request target as sent: path and query, still percent-encoded."""
        ...

    @property
    def path(self) -> str:
        """The path, percent-decoded, without the query."""
        ...

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def raw_headers(self) -> Sequence[tuple[bytes, bytes]]: ...
    @property
    def query(self) -> MultiMapping[str]: ...
    @property
    def remote(self) -> str | None: ...
    @property
    def secure(self) -> bool: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def body_exists(self) -> bool: ...
    @property
    def content(self) -> BodySource: ...
    @property
    def transport(self) -> asyncio.Transport | None: ...
    async def read(self) -> bytes: ...


class Reply(Protocol):
    """Where one answer goes: whole (:meth:`send`, :meth:`whole`) or streamed (:meth:`start`, :meth:`write`,
    :meth:`end`; :meth:`abort` cuts the connection when a streamed answer cannot be finished)."""

    def send(self, response: web.Response) -> None:
        """An answer built whole by the service itself (errors, python mode's results)."""

    def whole(self, head: ResponseHead, data: bytes, extra_headers: Headers, started: float | None) -> None:
        """An upstream's answer read whole: its headers minus hop-by-hop ones, then ``extra_headers``, then
        ``X-Duration-Seconds`` when ``started`` (a perf_counter reading) is given."""

    async def start(self, head: ResponseHead, extra_headers: Headers, started: float | None) -> None:
        """The head of an upstream's answer whose body follows through :meth:`write`."""

    async def write(self, chunk: bytes) -> None: ...
    async def end(self) -> None: ...
    def abort(self) -> None: ...
    @property
    def status(self) -> int:
        """The answer's status once its head is given (0 before)."""
        ...


def copy_response_headers(head: ResponseHead, target: CIMultiDict[str], *, drop_length: bool) -> None:
    """Add the upstream's headers to ``target`` minus hop-by-hop ones (and those its ``Connection`` header names)."""
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


def add_headers(target: CIMultiDict[str], extra_headers: Headers, started: float | None) -> None:
    for name, value in extra_headers:
        target[name] = value
    if started is not None:
        target[DURATION] = duration_header(started)


def whole_response(
    head: ResponseHead,
    data: bytes,
    extra_headers: Headers = (),
    *,
    started: float | None = None,
) -> web.Response:
    """The aiohttp response of an upstream's answer read whole."""
    response = web.Response(status=head.status, reason=head.reason or None)
    headers = response.headers
    copy_response_headers(head, headers, drop_length=True)
    add_headers(headers, extra_headers, started)
    if head.has_body:
        response.body = data
    return response


class AiohttpReply:
    """A :class:`Reply` for an aiohttp handler: the handler returns :attr:`response` once the proxy is done."""

    __slots__ = ("_request", "_stream", "response")

    def __init__(self, request: web.BaseRequest) -> None:
        self._request = request
        self._stream: web.StreamResponse | None = None
        self.response: web.StreamResponse | None = None

    def send(self, response: web.Response) -> None:
        self.response = response

    def whole(self, head: ResponseHead, data: bytes, extra_headers: Headers, started: float | None) -> None:
        self.response = whole_response(head, data, extra_headers, started=started)

    async def start(self, head: ResponseHead, extra_headers: Headers, started: float | None) -> None:
        stream = web.StreamResponse(status=head.status, reason=head.reason or None)
        copy_response_headers(head, stream.headers, drop_length=False)
        add_headers(stream.headers, extra_headers, started)
        self._stream = self.response = stream
        await stream.prepare(self._request)

    async def write(self, chunk: bytes) -> None:
        assert self._stream is not None
        await self._stream.write(chunk)

    async def end(self) -> None:
        assert self._stream is not None
        await self._stream.write_eof()

    def abort(self) -> None:
        if self._request.transport is not None:
            self._request.transport.close()

    @property
    def status(self) -> int:
        return 0 if self.response is None else self.response.status

    def result(self) -> web.StreamResponse:
        """The response the handler returns (after the proxy answered through this reply)."""
        assert self.response is not None, "the proxy returned without answering"
        return self.response
