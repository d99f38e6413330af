"""The head of a request to an upstream (request line, headers, body framing) as the bytes the client writes.

One builder for every request the services send on servicekit.upstream's client: the watchdog's http mode, the
gateway's function proxy and ``/system`` pass-through, and its own calls to the provider. A client's headers are
copied from the raw (bytes) headers, minus a drop set and the names its ``Connection`` header lists; the
caller adds its own before or after them, and :meth:`RequestHead.finish` adds the body's framing.
"""

from __future__ import annotations

from typing import Final

from servicekit.client_side import ClientRequest, header_value
from servicekit.headers import HOP_BY_HOP

HOP_BY_HOP_BYTES: Final = frozenset(h.encode() for h in HOP_BY_HOP)
# Request headers never copied as they are: hop-by-hop, the framing, Host (upstream gets its own), Expect (the
# server answered it already).
REQUEST_DROP: Final = HOP_BY_HOP_BYTES | {b"host", b"content-length", b"expect"}
_NOTHING: Final[frozenset[bytes]] = frozenset()


def connection_tokens(request: ClientRequest) -> frozenset[bytes]:
    """Extra header names the client's ``Connection`` header marks as hop-by-hop (usually none)."""
    value = header_value(request, b"connection")
    if not value:
        return _NOTHING
    return frozenset({t.strip().lower() for t in value.split(b",")} - {b"close", b"keep-alive", b""})


def framing(method: str, body_length: int | None) -> bytes:
    """The framing header of a request body: None is a streamed body of unknown length (chunked)."""
    if body_length is None:
        return b"Transfer-Encoding: chunked\r\n"
    if body_length or method in ("POST", "PUT", "PATCH"):
        return b"Content-Length: %d\r\n" % body_length
    return b""


class RequestHead:
    """A request head built in order: the request line, then :meth:`add` and :meth:`copy`, then :meth:`finish`."""

    __slots__ = ("_method", "parts")

    def __init__(self, method: str, target: str) -> None:
        self._method = method
        self.parts = [f"{method} {target} HTTP/1.1\r\n".encode("utf-8", "surrogateescape")]

    def add(self, name: bytes, value: bytes) -> None:
        self.parts.append(name + b": " + value + b"\r\n")

    def copy(
        self, request: ClientRequest, drop: frozenset[bytes], watch: frozenset[bytes] = _NOTHING
    ) -> dict[bytes, bytes]:
        """Add the client's headers minus ``drop`` and those its ``Connection`` header names.

        Returns the values of the ``watch``ed headers the client sent (lower-case names), copied or not, a
        repeated one joined with ", " (RFC 9110 §5.3), for the caller to add what is missing or derived.
        """
        tokens = connection_tokens(request)
        if tokens:
            drop = drop | tokens
        parts = self.parts
        found: dict[bytes, bytes] = {}
        for name, value in request.raw_headers:
            lower = name.lower()
            if lower in watch:
                found[lower] = found[lower] + b", " + value if lower in found else value
            if lower not in drop:
                parts.append(name + b": " + value + b"\r\n")
        return found

    def finish(self, body_length: int | None) -> bytes:
        """The whole head: ``body_length`` None announces a chunked body, else its Content-Length when needed."""
        parts = self.parts
        parts.append(framing(self._method, body_length))
        parts.append(b"\r\n")
        return b"".join(parts)
