"""One attempt of a queued call, sent to a replica the way ``/function/`` sends a request (gateway/proxy.py).

The same parts do the work: the hosts table (round robin, refused replicas skipped, one retry of a refused
connect on another replica), the keep-alive pools, scale from zero (gateway/scaler.py) and the gateway's
invocation metrics (an async call counts in ``gateway_function_invocation_total`` like a synchronous one). The
answer is read whole (at most ``max_body_bytes``), because it is kept for the callback.

When no answer comes, the outcome carries the status ``/function/`` would have answered (404 not deployed, 502
refused, 503 no replica, 504 timeout) and a one-line body, with ``X-OpenFaaS-Internal: gateway`` as the OpenFaaS
queue-worker's callbacks do for a failed invocation. One exception: when the function has no replica and the
provider cannot be asked to scale it (``ProviderError``: it is not up yet, or failing), nothing was attempted, and
the error is raised for the dispatcher to put the call back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import structlog

from gateway.async_calls import AsyncCall, Headers, Outcome
from gateway.config import GatewayConfig
from gateway.errors import (
    FunctionNotFoundError,
    GatewayError,
    ProviderError,
    UpstreamBadResponseError,
    UpstreamConnectError,
    UpstreamTimeoutError,
    from_relay,
)
from gateway.metrics import GatewayMetrics
from gateway.pools import Pools
from gateway.resolver import Resolver
from gateway.retry_policy import retry_after
from gateway.scaler import Scaler
from servicekit.headers import HOP_BY_HOP, INTERNAL
from servicekit.relay import RelayError, exchange
from servicekit.request_head import RequestHead
from servicekit.upstream import ResponseHead, UpstreamConnection, UpstreamPool, UpstreamProtocolError

log = structlog.get_logger("gateway.async")

_DROP_ANSWER: Final = HOP_BY_HOP | {"content-length"}


class FunctionInvoker:
    def __init__(
        self, config: GatewayConfig, resolver: Resolver, pools: Pools, scaler: Scaler, metrics: GatewayMetrics
    ) -> None:
        self._resolver = resolver
        self._pools = pools
        self._scaler = scaler
        self._metrics = metrics
        self._port = config.function_port
        self._timeout = config.upstream_timeout_s
        self._max_answer = config.max_body_bytes

    async def invoke(self, call: AsyncCall) -> Outcome:
        """Send ``call`` to a ready replica (scaling from zero if need be); the function's answer, or the
        gateway's status when there was none. ProviderError when the provider could not be asked for a replica."""
        started = time.perf_counter()
        key = call.function
        name, _, namespace = key.rpartition(".")
        counted = False
        try:
            replicas = self._resolver.replicas(key) or self._resolver.recheck(key)
            if not replicas:
                try:
                    replicas = await self._scaler.ready_replicas(name, namespace)
                except (FunctionNotFoundError, ProviderError):
                    raise
                except GatewayError:
                    counted = True
                    self._metrics.request_started(key)
                    raise
            counted = True
            self._metrics.request_started(key)
            outcome = await self._send(call, key, replicas, started)
        except ProviderError:
            raise  # not attempted: the dispatcher puts the call back
        except (GatewayError, RelayError) as exc:
            error = exc if isinstance(exc, GatewayError) else from_relay(exc)
            text = f"{error}\n".encode()
            headers = (("Content-Type", "text/plain; charset=utf-8"), (INTERNAL, "gateway"))
            outcome = Outcome(error.status, headers, text, time.perf_counter() - started)
        if counted:
            self._metrics.request_finished(key, outcome.status, outcome.duration_s)
        return outcome

    def _head(self, call: AsyncCall, ip: str) -> bytes:
        head = RequestHead(call.method, call.target)
        head.add(b"Host", b"%s:%d" % (ip.encode(), self._port))
        for name, value in call.headers:
            head.add(name.encode("latin-1", "replace"), value.encode("utf-8", "surrogateescape"))
        head.add(b"X-Start-Time", str(time.time_ns()).encode())
        return head.finish(len(call.body))

    async def _send(self, call: AsyncCall, key: str, replicas: tuple[str, ...], started: float) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        ip = self._resolver.pick(key, replicas)
        for attempt in (1, 2):
            pool = self._pools.get(ip)
            try:
                async with asyncio.timeout_at(deadline):
                    connection, head = await exchange(pool, self._head(call, ip), call.body, None)
                    body = await self._read(pool, connection, head, key)
            except TimeoutError:
                raise UpstreamTimeoutError(f"function {key} did not answer within {self._timeout:g}s") from None
            except ConnectionRefusedError:
                self._resolver.mark_refused(ip)
                if attempt == 1 and len(replicas) > 1:
                    ip = self._resolver.pick(key, replicas, avoid=ip)
                    continue
                raise UpstreamConnectError(f"cannot connect to function {key}: connection refused") from None
            except OSError as exc:
                reason = exc.strerror or str(exc) or exc.__class__.__name__
                raise UpstreamConnectError(f"cannot connect to function {key}: {reason}") from None
            headers: Headers = tuple((n, v) for n, v in head.headers if n.lower() not in _DROP_ANSWER)
            wait = retry_after(head.status, _header(head, "retry-after"), time.time())
            return Outcome(head.status, headers, body, time.perf_counter() - started, wait)
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _read(self, pool: UpstreamPool, connection: UpstreamConnection, head: ResponseHead, key: str) -> bytes:
        limit = self._max_answer
        if limit and head.content_length is not None and head.content_length > limit:
            connection.close()
            raise UpstreamBadResponseError(f"function {key} answered {head.content_length} bytes, over {limit}")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in connection.body(head):
                size += len(chunk)
                if limit and size > limit:
                    connection.close()
                    raise UpstreamBadResponseError(f"function {key} answered more than {limit} bytes")
                chunks.append(chunk)
        except UpstreamProtocolError as exc:
            connection.close()
            raise UpstreamBadResponseError(f"unusable answer from function {key}: {exc}") from None
        except OSError as exc:
            connection.close()
            raise UpstreamConnectError(f"function {key} broke the connection mid-answer: {exc}") from None
        except BaseException:
            connection.close()
            raise
        pool.release(connection, head)
        return b"".join(chunks)


def _header(head: ResponseHead, lower_name: str) -> str | None:
    for name, value in head.headers:
        if name.lower() == lower_name:
            return value
    return None
