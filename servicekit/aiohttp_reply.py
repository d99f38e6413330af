"""The aiohttp side of servicekit.client_side: the :class:`~servicekit.client_side.Reply` of an aiohttp handler,
and aiohttp's response objects for an upstream's answer and for an :class:`~servicekit.client_side.Answer`."""

from __future__ import annotations

from aiohttp import web

from servicekit.client_side import Answer, Headers, add_headers, copy_response_headers
from servicekit.upstream import ResponseHead


def aiohttp_response(answer: Answer) -> web.Response:
    """The aiohttp response of a whole answer the service built."""
    return web.Response(status=answer.status, reason=answer.reason, body=answer.body or None, headers=answer.headers)


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

    def send(self, answer: Answer) -> None:
        self.response = aiohttp_response(answer)

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
