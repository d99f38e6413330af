"""``POST /async-function/<name>[.<ns>][/<path>]`` and ``GET /system/async/<call-id>``.

Accepting: the name is split as ``/function/`` splits it, the ``X-Callback-Url`` checked (an absolute http(s)
URL, else 400), the function looked up (404 when not deployed: the hosts table first, then the provider), the
body read whole (over ``PYFAASD_ASYNC_MAX_BODY_BYTES``: 413). Then the whole request is written to the queue,
durably, and only then the caller gets ``202`` with an empty body, ``X-Call-Id`` (the caller's when sent) and
``X-Start-Time``. Nothing is stored for a request that gets a 4xx.

What is stored is what the function will see: method, path and raw query after the name segment, the caller's
headers minus hop-by-hop ones (and ``Host``, ``Content-Length``, ``Expect``), plus ``X-Call-Id``,
``X-Forwarded-For`` (the caller appended), ``X-Forwarded-Host`` (if absent) and ``X-Forwarded-Prefix``
(``/async-function/<name segment>``). ``X-Start-Time`` is set at each attempt.
"""

from __future__ import annotations

import time
from typing import Final

from aiohttp import web

from gateway.async_calls import AsyncCall, CallQueue
from gateway.callbacks import CallbackUrlError, check_callback_url
from gateway.config import GatewayConfig
from gateway.doorbell import Doorbell
from gateway.errors import AsyncCallNotFoundError, AsyncQueueError, BadRequestError, MethodNotAllowedError
from gateway.metrics import AsyncMetrics
from gateway.proxy import new_call_id, split_name
from gateway.resolver import Resolver
from gateway.scaler import Scaler
from gateway.system import SystemProxy
from servicekit import json_text
from servicekit.headers import HOP_BY_HOP
from servicekit.relay import read_body

PREFIX: Final = "/async-function/"
_DROP: Final = HOP_BY_HOP | {
    "host",
    "content-length",
    "expect",
    "x-call-id",
    "x-start-time",
    "x-forwarded-for",
    "x-forwarded-prefix",
}
CALL_ID_MAX: Final = 256


def split_async_path(raw_path: str) -> tuple[str, str]:
    """``/async-function/<segment>[/<path>][?<query>]`` → the raw name segment and the function's target."""
    rest = raw_path[len(PREFIX) :]
    query = ""
    mark = rest.find("?")
    if mark >= 0:
        rest, query = rest[:mark], rest[mark:]
    slash = rest.find("/")
    if slash < 0:
        return rest, "/" + query
    return rest[:slash], rest[slash:] + query


def stored_headers(request: web.Request, call_id: str, segment: str) -> tuple[tuple[str, str], ...]:
    tokens = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    headers = [(name, value) for name, value in request.headers.items() if name.lower() not in _DROP | tokens]
    remote = request.remote or ""
    forwarded_for = ", ".join(request.headers.getall("X-Forwarded-For", []))
    headers.append(("X-Forwarded-For", f"{forwarded_for}, {remote}" if forwarded_for else remote))
    if "X-Forwarded-Host" not in request.headers and request.host:
        headers.append(("X-Forwarded-Host", request.host))
    outer = request.headers.get("X-Forwarded-Prefix", "").rstrip("/")
    headers.append(("X-Forwarded-Prefix", f"{outer}{PREFIX}{segment}"))
    headers.append(("X-Call-Id", call_id))
    return tuple(headers)


class AsyncEdge:
    def __init__(
        self,
        config: GatewayConfig,
        resolver: Resolver,
        scaler: Scaler,
        queue: CallQueue,
        doorbell: Doorbell,
        metrics: AsyncMetrics,
        system: SystemProxy,
    ) -> None:
        self._config = config
        self._resolver = resolver
        self._scaler = scaler
        self._queue = queue
        self._doorbell = doorbell
        self._metrics = metrics
        self._system = system

    async def accept(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            raise MethodNotAllowedError(f"{request.method} is not allowed on /async-function/: use POST")
        start_ns = str(time.time_ns())
        segment, target = split_async_path(request.raw_path)
        name, namespace = split_name(segment)
        key = f"{name}.{namespace}"
        callback = request.headers.get("X-Callback-Url")
        if callback is not None:
            try:
                callback = check_callback_url(callback)
            except CallbackUrlError as exc:
                raise BadRequestError(str(exc)) from None
        call_id = request.headers.get("X-Call-Id", "").strip() or new_call_id()
        if len(call_id) > CALL_ID_MAX:
            raise BadRequestError(f"X-Call-Id: longer than {CALL_ID_MAX} characters")
        if not (self._resolver.replicas(key) or self._resolver.recheck(key)):
            await self._scaler.describe(name, namespace)  # FunctionNotFoundError: 404, nothing stored
        body = await read_body(request, self._config.async_max_body_bytes, self._config.read_timeout_s, whole=True)
        call = AsyncCall(
            call_id=call_id,
            function=key,
            requested_name=segment,
            method=request.method,
            target=target,
            headers=stored_headers(request, call_id, segment),
            body=body or b"",
            callback_url=callback,
        )
        try:
            await self._queue.enqueue(call)
        except Exception as exc:
            raise AsyncQueueError(f"the async queue could not store the request: {exc}") from None
        self._doorbell.ring()
        self._metrics.accepted.labels(key).inc()
        return web.Response(status=202, headers={"X-Call-Id": call_id, "X-Start-Time": start_ns})

    async def status(self, request: web.Request) -> web.Response:
        self._system.authorize(request)
        call_id = request.match_info["call_id"]
        try:
            found = await self._queue.status(call_id)
        except Exception as exc:
            raise AsyncQueueError(f"the async queue could not be read: {exc}") from None
        if found is None:
            raise AsyncCallNotFoundError(f"no async call with id {call_id[:CALL_ID_MAX]!r}")
        return web.json_response(found.as_json(), dumps=json_text.dumps)
