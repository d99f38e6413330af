"""``/system/*`` and ``/healthz``: checked against basic auth, then passed to the provider with the gateway's
own credentials (the client's ``Authorization`` is replaced).

Method, path, raw query, headers minus hop-by-hop ones and the body go through as they are, and status, headers
and body come back (streamed). A few routes add to it, as the OpenFaaS gateway does (openfaas/faas gateway/main.go):

* ``GET /system/functions`` fills ``invocationCount`` from the gateway's own counters (omitted when 0).
* ``GET /system/info`` wraps the provider's info: ``{"provider": ..., "version": ..., "arch": ...}``.
* ``GET /system/logs`` streams the NDJSON through line by line; a provider 404 or 501 is 501.
* ``/healthz`` needs no credentials from the client.
"""

from __future__ import annotations

import asyncio
import json
import platform
from typing import Any, Final

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.errors import LogsNotSupportedError, UnauthorizedError, UpstreamTimeoutError
from gateway.metrics import GatewayMetrics
from gateway.provider import USER_AGENT, ProviderClient
from netconf.hosts import DEFAULT_NAMESPACE
from servicekit import json_text
from servicekit.aiohttp_reply import AiohttpReply, whole_response
from servicekit.auth import REJECTION, Credentials, check_authorization
from servicekit.relay import body_length, exchange, read_body, read_whole, relay
from servicekit.request_head import REQUEST_DROP, RequestHead
from servicekit.upstream import ResponseHead, UpstreamConnection
from servicekit.version import __version__, commit_sha

_SYSTEM_DROP: Final = REQUEST_DROP | {b"authorization"}
# Client headers the provider's head is completed from.
_SYSTEM_WATCH: Final = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-host", b"user-agent"})
# Go's FunctionStatus field order: invocationCount goes before the first of these that is present.
_AFTER_INVOCATION_COUNT: Final = ("replicas", "availableReplicas", "createdAt", "usage")


def version_info() -> dict[str, str]:
    """The gateway's VersionInfo: the release, and the git commit when running from a checkout."""
    return {"sha": commit_sha(), "release": __version__}


def add_invocation_counts(functions: list[Any], counts: dict[str, float], default_namespace: str) -> bool:
    """Set ``invocationCount`` in each FunctionStatus from ``counts``; True when anything changed."""
    changed = False
    for i, status in enumerate(functions):
        if not isinstance(status, dict) or not isinstance(status.get("name"), str):
            continue
        namespace = status.get("namespace") or default_namespace
        count = counts.get(f"{status['name']}.{namespace}", 0.0)
        if not count:
            if "invocationCount" in status:
                del status["invocationCount"]
                changed = True
            continue
        value: float | int = int(count) if count.is_integer() else count
        if status.get("invocationCount") == value:
            continue
        changed = True
        if "invocationCount" in status:
            status["invocationCount"] = value
            continue
        rebuilt: dict[str, Any] = {}
        for field, field_value in status.items():
            if field in _AFTER_INVOCATION_COUNT and "invocationCount" not in rebuilt:
                rebuilt["invocationCount"] = value
            rebuilt[field] = field_value
        rebuilt.setdefault("invocationCount", value)
        functions[i] = rebuilt
    return changed


class SystemProxy:
    def __init__(
        self,
        config: GatewayConfig,
        provider: ProviderClient,
        credentials: Credentials,
        metrics: GatewayMetrics,
        version: dict[str, str],
    ) -> None:
        self._config = config
        self._provider = provider
        self._credentials = credentials
        self._metrics = metrics
        self._version = version
        self._arch = platform.machine()

    def authorize(self, request: web.Request) -> None:
        if not check_authorization(request.headers.get("Authorization"), self._credentials):
            raise UnauthorizedError(REJECTION)

    # -- routes ------------------------------------------------------------------------------------------

    async def forward(self, request: web.Request) -> web.StreamResponse:
        self.authorize(request)
        return await self._pass(request)

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return await self._pass(request)

    async def logs(self, request: web.Request) -> web.StreamResponse:
        self.authorize(request)
        connection, head, _deadline = await self._send(request)
        if head.status in (404, 501):
            connection.close()
            raise LogsNotSupportedError(f"the provider has no logs for this request ({head.status})")
        return await self._relay(request, connection, head, None)  # logs follow as long as they come

    async def list_functions(self, request: web.Request) -> web.StreamResponse:
        answer = await self._provider_json(request)
        if isinstance(answer, web.StreamResponse):
            return answer
        head, data, functions = answer
        if isinstance(functions, list):
            namespace = request.query.get("namespace") or DEFAULT_NAMESPACE
            if add_invocation_counts(functions, self._metrics.invocation_counts(), namespace):
                data = json_text.dumps_bytes(functions)
        return whole_response(head, data)

    async def info(self, request: web.Request) -> web.StreamResponse:
        answer = await self._provider_json(request)
        if isinstance(answer, web.StreamResponse):
            return answer
        _head, _data, provider = answer
        body = {"provider": provider, "version": self._version, "arch": self._arch}
        return web.json_response(body, dumps=json_text.dumps)

    async def _provider_json(self, request: web.Request) -> web.StreamResponse | tuple[ResponseHead, bytes, object]:
        """The provider's 200 answer (head, body, parsed JSON or None), or any other answer relayed as it is."""
        self.authorize(request)
        connection, head, deadline = await self._send(request)
        if head.status != 200:
            return await self._relay(request, connection, head, deadline)
        data = await self._read(connection, head, deadline)
        try:
            parsed: object = json.loads(data)
        except ValueError:
            parsed = None
        return head, data, parsed

    # -- the pass-through --------------------------------------------------------------------------------

    @property
    def _write_timeout(self) -> float:
        return self._config.write_timeout_s

    async def _pass(self, request: web.Request) -> web.StreamResponse:
        connection, head, deadline = await self._send(request)
        return await self._relay(request, connection, head, deadline)

    async def _relay(
        self, request: web.Request, connection: UpstreamConnection, head: ResponseHead, deadline: float | None
    ) -> web.StreamResponse:
        reply = AiohttpReply(request)
        await relay(
            request,
            reply,
            self._provider.pool,
            connection,
            head,
            body_deadline=deadline,
            write_timeout=self._write_timeout,
        )
        return reply.result()

    async def _read(self, connection: UpstreamConnection, head: ResponseHead, deadline: float) -> bytes:
        try:
            async with asyncio.timeout_at(deadline):
                return await read_whole(self._provider.pool, connection, head)
        except TimeoutError:
            raise UpstreamTimeoutError("the provider did not send its answer in time") from None

    async def _send(self, request: web.Request) -> tuple[UpstreamConnection, ResponseHead, float]:
        config = self._config
        provider = self._provider
        body = await read_body(request, config.max_body_bytes, config.read_timeout_s)
        length = body_length(request, body)
        head = self._head(request, length)
        deadline = asyncio.get_running_loop().time() + provider.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                connection, response_head = await exchange(
                    provider.pool,
                    head,
                    body,
                    request,
                    max_body=config.max_body_bytes,
                    read_timeout=config.read_timeout_s,
                    chunked=length is None,
                )
        except TimeoutError:
            raise UpstreamTimeoutError(f"the provider did not answer within {provider.timeout_s:g}s") from None
        except OSError as exc:
            raise provider.unreachable(exc) from None
        return connection, response_head, deadline

    def _head(self, request: web.Request, length: int | None) -> bytes:
        provider = self._provider
        head = RequestHead(request.method, provider.target(request.raw_path))
        head.add(b"Host", provider.host_header)
        head.add(b"Authorization", provider.authorization)
        found = head.copy(request, _SYSTEM_DROP, _SYSTEM_WATCH)
        if b"x-forwarded-for" not in found:
            head.add(b"X-Forwarded-For", (request.remote or "").encode())
        host = found.get(b"host")
        if host and b"x-forwarded-host" not in found:
            head.add(b"X-Forwarded-Host", host)
        if b"user-agent" not in found:
            head.add(b"User-Agent", USER_AGENT.encode())
        return head.finish(length)
