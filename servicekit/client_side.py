"""The client's side of one proxied exchange, whichever server parsed it: its request, and where the answer goes.

Two servers parse requests: aiohttp (every route) and servicekit.lean_server (the hot paths: the gateway's
``/function/`` and the watchdog's function calls). The proxies (servicekit.relay, gateway/proxy.py, the
watchdog's executors) are written once against these protocols:

- :class:`ClientRequest`: the part of ``aiohttp.web.BaseRequest`` they read; aiohttp's request has it as it is,
  and ``lean_server.LeanRequest`` has the same names.
- :class:`Reply`: where the answer goes. The lean server writes it to the connection as it comes; for aiohttp,
  ``servicekit.aiohttp_reply.AiohttpReply`` builds the response object the handler returns.
- :class:`Answer`: a whole answer the service builds itself (errors, health, python mode's results).

No aiohttp here: the watchdog's http and python modes serve on the lean server alone and never import it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

from servicekit.headers import DURATION, HOP_BY_HOP, duration_header, raw_header
from servicekit.upstream import ResponseHead

Headers = Iterable[tuple[str, str]]
TEXT_PLAIN = "text/plain; charset=utf-8"


@dataclass(slots=True)
class Answer:
    """A whole answer the service builds itself; the names of ``aiohttp.web.Response``. ``Content-Length`` is the
    body's, added by the server."""

    status: int = 200
    body: bytes = b""
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    reason: str | None = None

    @classmethod
    def text(cls, status: int, text: str, headers: Headers = ()) -> Answer:
        """A plain-text answer (``text/plain; charset=utf-8``, as aiohttp's ``Response(text=...)``)."""
        answer = cls(status, text.encode())
        answer.headers["Content-Type"] = TEXT_PLAIN
        for name, value in headers:
            answer.headers[name] = value
        return answer


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
    def clone(self, *, rel_url: str) -> ClientRequest:
        """The same request head at another target, without a body (the watchdog's ready probe)."""
        ...


class Reply(Protocol):
    """Where one answer goes: whole (:meth:`send`, :meth:`whole`) or streamed (:meth:`start`, :meth:`write`,
    :meth:`end`; :meth:`abort` cuts the connection when a streamed answer cannot be finished)."""

    def send(self, answer: Answer) -> None:
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


def header_value(request: ClientRequest, lower_name: bytes) -> bytes | None:
    """The first value of a request header by its lower-case name, from the raw headers: on the lean server's hot
    paths this spares building :attr:`ClientRequest.headers` (a multidict of every header, decoded)."""
    return raw_header(request.raw_headers, lower_name)


def header_text(request: ClientRequest, lower_name: bytes) -> str | None:
    """:func:`header_value` decoded as :attr:`ClientRequest.headers` decodes it (UTF-8, undecodable bytes kept)."""
    value = header_value(request, lower_name)
    return None if value is None else value.decode("utf-8", "surrogateescape")


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


ClientHandler = Callable[[ClientRequest, Reply], Awaitable[None]]
