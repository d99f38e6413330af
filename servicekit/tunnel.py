"""An upgrade (a websocket) passed through to an upstream as bytes, both ways: the watchdog's http mode on the lean
server, which has no websocket stack of its own (as Go's ``httputil.ReverseProxy`` does after a 101).

The request head goes to the upstream as the caller built it. The upstream's answer goes to the client as it
came, head and all, read through llhttp only to see where it ends: a ``101`` switches both sides to bytes until
either side is done (as Go's proxy: the first of the two copies to finish ends both); any other answer ends the
exchange once it is complete. Either way the client's connection closes after it.
"""

from __future__ import annotations

import asyncio
from typing import Final

import httptools

from servicekit.lean_server import LeanReply, LeanRequest

READ_SIZE: Final = 64 * 1024


class UpstreamHeadTimeoutError(TimeoutError):
    """The upstream did not begin its answer to the upgrade in time."""


class _Answer:
    """llhttp's callbacks for the upstream's answer: only whether it is complete."""

    __slots__ = ("complete",)

    def __init__(self) -> None:
        self.complete = False

    def on_message_complete(self) -> None:
        self.complete = True


async def tunnel(
    request: LeanRequest, reply: LeanReply, address: tuple[str, int], head: bytes, head_timeout_s: float | None
) -> None:
    """Send ``head`` to the upstream at ``address`` and pass the exchange through. Raises OSError when the upstream
    cannot be reached and UpstreamHeadTimeoutError when its answer does not begin within ``head_timeout_s``, both
    before anything is answered; a failure after that cuts the connection."""
    assert request.upgraded is not None, "only an upgrade answered by the lean server is tunnelled"
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(head)
        try:
            async with asyncio.timeout(head_timeout_s):
                first = await reader.read(READ_SIZE)
        except TimeoutError:
            raise UpstreamHeadTimeoutError("the function did not answer the upgrade in time") from None
        if not first:
            raise ConnectionResetError("the function closed the connection without answering the upgrade")
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        switched = await _answer_until_switched(reader, reply, parser, answer, first)
        if switched:
            await _both_ways(request, reply, reader, writer)
    except OSError:
        if reply.started:
            reply.abort()
            return
        raise
    finally:
        writer.close()


async def _answer_until_switched(
    reader: asyncio.StreamReader,
    reply: LeanReply,
    parser: httptools.HttpResponseParser,
    answer: _Answer,
    data: bytes,
) -> bool:
    """Pass the upstream's answer on until it switched protocols (True) or is complete (False)."""
    while True:
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            await reply.pass_through(parser.get_status_code(), data)
            return True
        except httptools.HttpParserError as exc:
            raise ConnectionResetError(f"the function's answer to the upgrade is not HTTP: {exc}") from None
        await reply.pass_through(parser.get_status_code(), data)
        if answer.complete:
            return False
        data = await reader.read(READ_SIZE)
        if not data:
            return False  # an answer framed by the close ends here


async def _both_ways(
    request: LeanRequest, reply: LeanReply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Bytes both ways until either side is done or gone."""
    copies = {
        asyncio.create_task(_client_to_upstream(request, writer)),
        asyncio.create_task(_upstream_to_client(reader, reply)),
    }
    try:
        await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for copy in copies:
            copy.cancel()
        await asyncio.gather(*copies, return_exceptions=True)  # a side that went away ends the tunnel, no more


async def _client_to_upstream(request: LeanRequest, writer: asyncio.StreamWriter) -> None:
    upgraded = request.upgraded
    assert upgraded is not None
    async for data in upgraded.iter_any():
        writer.write(data)
        await writer.drain()


async def _upstream_to_client(reader: asyncio.StreamReader, reply: LeanReply) -> None:
    while data := await reader.read(READ_SIZE):
        await reply.pass_through(101, data)
