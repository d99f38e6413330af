"""Calls from the gateway to the provider's API, always with the gateway's own basic-auth credentials."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.config import ProviderAddress
from gateway.errors import ProviderError, UpstreamTimeoutError, from_relay
from servicekit.auth import Credentials
from servicekit.relay import RelayError, exchange, read_whole
from servicekit.request_head import RequestHead
from servicekit.upstream import ResponseHead, UpstreamPool
from servicekit.version import __version__

USER_AGENT = f"pyfaasd-gateway/{__version__}"
_USER_AGENT = USER_AGENT.encode()


class ProviderClient:
    """One keep-alive pool to the provider, and the request heads that go to it."""

    def __init__(self, address: ProviderAddress, credentials: Credentials, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.pool = UpstreamPool(address.host, address.port)
        self.host_header = f"{address.host}:{address.port}".encode()
        self.authorization = credentials.authorization.encode()

    def target(self, path_and_query: str) -> str:
        return self.address.base_path + path_and_query

    def unreachable(self, exc: OSError) -> ProviderError:
        reason = exc.strerror or str(exc) or exc.__class__.__name__
        return ProviderError(f"cannot reach the provider at {self.address.url}: {reason}")

    async def call(self, method: str, path_and_query: str, body: bytes | None = None) -> tuple[ResponseHead, bytes]:
        """A small request with a JSON body (or none), answered whole."""
        request = RequestHead(method, self.target(path_and_query))
        request.add(b"Host", self.host_header)
        request.add(b"Authorization", self.authorization)
        request.add(b"User-Agent", _USER_AGENT)
        request.add(b"Accept", b"application/json")
        if body is not None:
            request.add(b"Content-Type", b"application/json")
        try:
            async with asyncio.timeout(self.timeout_s):
                connection, head = await exchange(self.pool, request.finish(len(body or b"")), body or b"", None)
                return head, await read_whole(self.pool, connection, head)
        except TimeoutError:
            raise UpstreamTimeoutError(f"the provider did not answer within {self.timeout_s:g}s") from None
        except RelayError as exc:
            raise from_relay(exc) from None
        except OSError as exc:
            raise self.unreachable(exc) from None

    async def call_json(self, method: str, path_and_query: str, payload: Any = None) -> tuple[int, Any, bytes]:
        """Status, parsed JSON (None when the body is not JSON) and the raw body."""
        body = None if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        head, data = await self.call(method, path_and_query, body)
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return head.status, parsed, data

    def close(self) -> None:
        self.pool.close()
