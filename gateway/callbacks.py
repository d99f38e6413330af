"""The callback of an async call: a POST of the function's answer to the caller's ``X-Callback-Url``.

As the OpenFaaS queue-worker sends it: the function's body and headers (minus hop-by-hop ones), plus
``X-Call-Id``, ``X-Function-Status`` (the function's status, or the gateway's when there was no answer),
``X-Function-Name`` (the name as the caller wrote it) and ``X-Duration-Seconds`` (the invocation, Go's ``%f``).
Redirects are not followed. Whether a failure is retried is decided by the dispatcher
(:func:`gateway.retry_policy.callback_retries`).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict

from gateway.async_calls import PendingCallback
from gateway.provider import USER_AGENT
from servicekit.headers import HOP_BY_HOP

CALLBACK_URL_MAX: Final = 2048
_DROP: Final = HOP_BY_HOP | {"content-length", "host"}


class CallbackUrlError(ValueError):
    """An ``X-Callback-Url`` that cannot be called back; the message says why."""


def check_callback_url(value: str) -> str:
    """The URL, if it is an absolute http(s) URL with a host; else CallbackUrlError."""
    text = value.strip()
    if len(text) > CALLBACK_URL_MAX:
        raise CallbackUrlError(f"X-Callback-Url: longer than {CALLBACK_URL_MAX} characters")
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise CallbackUrlError("X-Callback-Url: contains blanks or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise CallbackUrlError(f"X-Callback-Url: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackUrlError(f"X-Callback-Url: {text[:200]!r} is not an absolute http:// or https:// URL")
    if not parts.hostname:
        raise CallbackUrlError(f"X-Callback-Url: {text[:200]!r} names no host")
    if port == 0:
        raise CallbackUrlError(f"X-Callback-Url: {text[:200]!r} names port 0")
    return text


def callback_headers(pending: PendingCallback) -> CIMultiDict[str]:
    outcome = pending.outcome
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in outcome.headers:
        if name.lower() not in _DROP:
            headers.add(name, value)
    headers["X-Call-Id"] = pending.call_id
    headers["X-Function-Status"] = str(outcome.status)
    headers["X-Function-Name"] = pending.requested_name
    headers["X-Duration-Seconds"] = f"{outcome.duration_s:f}"
    headers["User-Agent"] = USER_AGENT
    return headers


class CallbackSender:
    """POSTs callbacks on one aiohttp session (made on first use); ``timeout_s`` bounds each one."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, pending: PendingCallback) -> int | None:
        """The receiver's status, or None when it gave none (refused, reset, timed out)."""
        if self._session is None:
            # No connection limit: the dispatcher bounds callbacks per function, so a slow receiver of one
            # function cannot take connections another function's callbacks need.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                timeout=self._timeout,
            )
        try:
            async with self._session.post(
                pending.callback_url,
                data=pending.outcome.body,
                headers=callback_headers(pending),
                allow_redirects=False,
            ) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
