"""``/function/<name>[.<namespace>][/<path>]``: straight to a ready replica, one hop.

The namespace is what follows the last dot of the name segment (default ``openfaas-fn``). The replica is picked
round robin from the hosts table; a refused connect is retried once on another replica (nothing was sent, so
this is safe for every method). The request goes to ``http://<ip>:<function port>/<path>?<raw query>`` with
its method, headers minus hop-by-hop ones, and body; status, headers and body come back as they are (redirects
are not followed). Added upstream: ``X-Call-Id`` (the caller's is kept), ``X-Start-Time`` (Unix ns),
``X-Forwarded-For`` (appended to), ``X-Forwarded-Host`` and ``X-Forwarded-Proto`` (if absent) and
``X-Forwarded-Prefix`` (``/function/<name segment>``, after any prefix an outer proxy set). The client gets
``X-Call-Id`` and ``X-Start-Time`` back.

A function's own domain or path (gateway/routes.py) comes in through :meth:`FunctionProxy.invoke_route` and takes
the same path from there: the prefix is the path route's (none on a domain, so no ``X-Forwarded-Prefix`` unless
an outer proxy sent one).

Websocket upgrades are relayed message by message; server-sent events and NDJSON stream through with no
deadline on the body.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from typing import Final
from urllib.parse import unquote

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict

from gateway.config import GatewayConfig
from gateway.errors import (
    BadRequestError,
    FunctionNotFoundError,
    GatewayError,
    NoReplicaError,
    ReplicaUnreachableError,
    ScaleTimeoutError,
    UpstreamBadResponseError,
    UpstreamConnectError,
    UpstreamTimeoutError,
    from_relay,
)
from gateway.metrics import GatewayMetrics
from gateway.pools import Pools
from gateway.resolver import Resolver
from gateway.scaler import Scaler
from netconf.hosts import DEFAULT_NAMESPACE
from servicekit.access_log import AccessLog
from servicekit.aiohttp_reply import AiohttpReply
from servicekit.client_side import ClientRequest, Reply, header_text
from servicekit.headers import HOP_BY_HOP
from servicekit.relay import RelayError, body_length, proxy, read_body
from servicekit.request_head import REQUEST_DROP, RequestHead
from servicekit.upstream import UpstreamUnreachableError
from servicekit.websocket import relay_websocket

log = structlog.get_logger("gateway")

PREFIX: Final = "/function/"
PREFIX_BYTES: Final = PREFIX.encode()
_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
# Set by the gateway itself, so a client's value is replaced rather than passed on.
_FUNCTION_DROP: Final = REQUEST_DROP | {b"x-start-time", b"x-forwarded-for", b"x-forwarded-prefix"}
# Client headers the upstream head is completed from.
_FUNCTION_WATCH: Final = frozenset(
    {b"host", b"x-forwarded-for", b"x-forwarded-prefix", b"x-forwarded-host", b"x-forwarded-proto", b"x-call-id"}
)
_WS_OWN: Final = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "host",
        "content-length",
        "x-start-time",
    }
)
CLIENT_CLOSED: Final = 499  # nginx's code for a client that went away, in metrics and access lines only


class CallIds:
    """UUID-shaped request ids: a random per-process prefix and a counter (a uuid4 costs ~2 µs per request).

    Forked workers start over with a prefix of their own, so ids never repeat across workers.
    """

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        raw = secrets.token_hex(10)
        variant = "89ab"[int(raw[12], 16) & 3]
        self._prefix = f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{variant}{raw[16:19]}-"
        self._count = int.from_bytes(secrets.token_bytes(4)) << 16

    def __call__(self) -> str:
        self._count += 1
        return f"{self._prefix}{self._count & 0xFFFFFFFFFFFF:012x}"


new_call_id = CallIds()
os.register_at_fork(after_in_child=new_call_id.reset)


def split_function_path(raw_path: str) -> tuple[str, str]:
    """``/function/<segment>[/<path>][?<query>]`` → the raw name segment and the upstream target."""
    rest = raw_path[len(PREFIX) :]
    query = ""
    mark = rest.find("?")
    if mark >= 0:
        rest, query = rest[:mark], rest[mark:]
    slash = rest.find("/")
    if slash < 0:
        return rest, "/" + query
    return rest[:slash], rest[slash:] + query


def split_name(segment: str) -> tuple[str, str]:
    """The function name and namespace of a name segment: split on the last dot (faasd's InvokeResolver)."""
    text = unquote(segment) if "%" in segment else segment
    if not text:
        raise BadRequestError("Provide function name in the request path")
    name, dot, namespace = text.rpartition(".")
    if not dot:
        name, namespace = namespace, DEFAULT_NAMESPACE
    if not _NAME.fullmatch(name) or not _NAME.fullmatch(namespace):
        raise FunctionNotFoundError(f"error finding function {text}: not a valid function name")
    return name, namespace


def is_websocket(request: ClientRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


class FunctionProxy:
    def __init__(
        self,
        config: GatewayConfig,
        resolver: Resolver,
        pools: Pools,
        scaler: Scaler,
        metrics: GatewayMetrics,
        access_log: AccessLog | None,
    ) -> None:
        self._config = config
        self._resolver = resolver
        self._pools = pools
        self._scaler = scaler
        self._metrics = metrics
        self._access_log = access_log
        self._port = config.function_port
        self._timeout = config.upstream_timeout_s
        self._ws_session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._ws_session is not None:
            await self._ws_session.close()

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        """``/function/<name>[.<namespace>][/<path>]`` (the aiohttp route)."""
        reply = AiohttpReply(request)
        await self.call(request, reply)
        return reply.result()

    async def call(self, request: ClientRequest, reply: Reply) -> None:
        """``/function/<name>[.<namespace>][/<path>]``, answered to ``reply`` (the lean server's route too)."""
        segment, target = split_function_path(request.raw_path)
        prefix = PREFIX_BYTES + segment.encode("utf-8", "surrogateescape")
        await self._invoke(request, reply, segment, None, target, prefix)

    async def invoke_route(self, request: web.Request, function: str, target: str, prefix: str) -> web.StreamResponse:
        """A request on a function's own domain or path prefix (the aiohttp route)."""
        reply = AiohttpReply(request)
        await self.call_route(request, reply, function, target, prefix)
        return reply.result()

    async def call_route(self, request: ClientRequest, reply: Reply, function: str, target: str, prefix: str) -> None:
        """A request on a function's own domain or path prefix (gateway/routes.py): ``function`` is
        ``name.namespace``, ``target`` the path (and query) it sees, ``prefix`` the one stripped (or "")."""
        name, _, namespace = function.rpartition(".")
        await self._invoke(request, reply, function, (name, namespace), target, prefix.encode())

    async def _invoke(
        self,
        request: ClientRequest,
        reply: Reply,
        segment: str,
        known: tuple[str, str] | None,
        target: str,
        prefix: bytes,
    ) -> None:
        started = time.perf_counter()
        call_id = header_text(request, b"x-call-id") or new_call_id()
        start_ns = str(time.time_ns())
        echo = (("X-Call-Id", call_id), ("X-Start-Time", start_ns))
        key = segment
        status = 500
        counted = False
        try:
            name, namespace = known or split_name(segment)
            key = f"{name}.{namespace}"
            structlog.contextvars.bind_contextvars(request_id=call_id, function=key)
            resolver = self._resolver
            replicas = resolver.replicas(key) or resolver.recheck(key)
            if not replicas:
                try:
                    replicas = await self._scaler.ready_replicas(name, namespace)
                except (NoReplicaError, ScaleTimeoutError):
                    counted = True  # the function exists: its failures count
                    self._metrics.request_started(key)
                    raise
            counted = True
            self._metrics.request_started(key)
            if isinstance(reply, AiohttpReply) and is_websocket(request):
                assert isinstance(request, web.Request)  # upgrades are aiohttp's (servicekit.lean_server)
                reply.response = await self._websocket(request, key, replicas, prefix, target, call_id, start_ns)
            else:
                await self._forward(request, reply, key, replicas, prefix, target, call_id, start_ns, echo)
            status = reply.status
        except (GatewayError, RelayError) as exc:
            error = exc if isinstance(exc, GatewayError) else from_relay(exc)
            status = error.status
            error.headers = (*error.headers, *echo)
            raise error from None
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            elapsed = time.perf_counter() - started
            if counted:
                self._metrics.request_finished(key, status, elapsed)
            if self._access_log is not None:
                fields = (("function", key), ("request_id", call_id))
                self._access_log.request(request.method, request.path, status, elapsed, fields)

    def _head(
        self,
        request: ClientRequest,
        ip: str,
        prefix: bytes,
        target: str,
        call_id: str,
        start_ns: str,
        length: int | None,
    ) -> bytes:
        # The hot path: lines go straight onto ``head.parts`` (a method call per header would cost ~1 µs a
        # request); the builder still owns the request line, the copy of the client's headers and the framing.
        head = RequestHead(request.method, target)
        parts = head.parts
        parts.append(b"Host: %s:%d\r\n" % (ip.encode(), self._port))
        found = head.copy(request, _FUNCTION_DROP, _FUNCTION_WATCH)
        remote = (request.remote or "").encode()
        forwarded_for = found.get(b"x-forwarded-for")
        parts.append(b"X-Forwarded-For: " + (forwarded_for + b", " + remote if forwarded_for else remote) + b"\r\n")
        host = found.get(b"host")
        if host and b"x-forwarded-host" not in found:
            parts.append(b"X-Forwarded-Host: " + host + b"\r\n")
        forwarded_prefix = found.get(b"x-forwarded-prefix", b"").rstrip(b"/") + prefix
        if forwarded_prefix:
            parts.append(b"X-Forwarded-Prefix: " + forwarded_prefix + b"\r\n")
        if b"x-forwarded-proto" not in found:
            parts.append(b"X-Forwarded-Proto: https\r\n" if request.secure else b"X-Forwarded-Proto: http\r\n")
        if b"x-call-id" not in found:
            parts.append(b"X-Call-Id: " + call_id.encode() + b"\r\n")
        parts.append(b"X-Start-Time: " + start_ns.encode() + b"\r\n")
        return head.finish(length)

    async def _forward(
        self,
        request: ClientRequest,
        reply: Reply,
        key: str,
        replicas: tuple[str, ...],
        prefix: bytes,
        target: str,
        call_id: str,
        start_ns: str,
        echo: tuple[tuple[str, str], ...],
    ) -> None:
        config = self._config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        body = await read_body(request, config.max_body_bytes, config.read_timeout_s)
        length = body_length(request, body)
        ip = self._resolver.pick(key, replicas)
        for attempt in (1, 2):
            head = self._head(request, ip, prefix, target, call_id, start_ns, length)
            try:
                return await proxy(
                    request,
                    reply,
                    self._pools.get(ip),
                    head,
                    body,
                    deadline=deadline,
                    max_body=config.max_body_bytes,
                    read_timeout=config.read_timeout_s,
                    write_timeout=config.write_timeout_s,
                    extra_headers=echo,
                )
            except TimeoutError:
                raise UpstreamTimeoutError(f"function {key} did not answer within {self._timeout:g}s") from None
            except (UpstreamUnreachableError, ConnectionRefusedError) as exc:
                # Nothing was sent either way, so another replica is tried once.
                unreachable = isinstance(exc, UpstreamUnreachableError)
                self._resolver.mark_refused(ip)
                if attempt == 1 and len(replicas) > 1:
                    if unreachable:
                        log.warning("replica_unreachable", replica=ip)
                    else:
                        log.info("replica_refused", replica=ip)
                    ip = self._resolver.pick(key, replicas, avoid=ip)
                    continue
                if unreachable:
                    raise ReplicaUnreachableError(
                        f"function {key} is unreachable: no connection within {config.connect_timeout_s:g}s"
                    ) from None
                raise UpstreamConnectError(f"cannot connect to function {key}: connection refused") from None
            except OSError as exc:
                reason = exc.strerror or str(exc) or exc.__class__.__name__
                raise UpstreamConnectError(f"cannot connect to function {key}: {reason}") from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _websocket(
        self,
        request: web.Request,
        key: str,
        replicas: tuple[str, ...],
        prefix: bytes,
        target: str,
        call_id: str,
        start_ns: str,
    ) -> web.StreamResponse:
        if self._ws_session is None:
            self._ws_session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",), auto_decompress=False
            )
        ip = self._resolver.pick(key, replicas)
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            lower = name.lower()
            if lower not in HOP_BY_HOP and lower not in _WS_OWN:
                headers.add(name, value)
        if request.host:
            headers.setdefault("X-Forwarded-Host", request.host)
        forwarded_for = headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded_for}, {request.remote}" if forwarded_for else request.remote or ""
        forwarded_prefix = headers.pop("X-Forwarded-Prefix", "").rstrip("/") + prefix.decode("utf-8", "surrogateescape")
        if forwarded_prefix:
            headers["X-Forwarded-Prefix"] = forwarded_prefix
        headers.setdefault("X-Forwarded-Proto", "https" if request.secure else "http")
        headers.setdefault("X-Call-Id", call_id)
        headers["X-Start-Time"] = start_ns
        protocols = tuple(p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip())
        url = f"http://{ip}:{self._port}{target}"
        try:
            async with asyncio.timeout(self._timeout):
                upstream = await self._ws_session.ws_connect(url, headers=headers, protocols=protocols)
        except TimeoutError:
            raise UpstreamTimeoutError(f"function {key} did not accept the websocket in time") from None
        except aiohttp.WSServerHandshakeError as exc:
            raise UpstreamBadResponseError(f"function {key} refused the websocket upgrade ({exc.status})") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                self._resolver.mark_refused(ip)
            raise UpstreamConnectError(f"cannot connect to function {key}: {exc.os_error.strerror}") from None
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError(f"websocket to function {key} failed: {exc!r}") from None
        return await relay_websocket(request, upstream)
