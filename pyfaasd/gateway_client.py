"""The CLI's requests to the gateway: stdlib ``urllib`` (the CLI needs no event loop), no redirects followed.

Any HTTP status comes back as a :class:`Response`; a transport failure is an ``OSError``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servicekit.auth import Credentials
from servicekit.version import __version__

TIMEOUT_S = 60.0  # faas-cli's default command timeout


Out = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Target:
    """The gateway a command talks to, and the credentials it sends."""

    gateway: str
    credentials: Credentials | None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    raw: bytes  # the body as it came (a function's answer may be binary)

    @property
    def body(self) -> str:
        return self.raw.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.raw)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is reported as the status it is


_OPENER = urllib.request.build_opener(_NoRedirect)


class StatusError(Exception):
    """A streamed request answered something other than 200 (the answer is ``response``)."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"{response.status} {response.reason}: {response.body.strip()}")
        self.response = response


def _request(
    method: str,
    url: str,
    credentials: Credentials | None,
    body: Mapping[str, object] | None,
    data: bytes | None,
    extra_headers: Mapping[str, str] | None = None,
) -> urllib.request.Request:
    headers = {"User-Agent": f"pyfaasd/{__version__}"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif data is not None:
        headers["Content-Type"] = "application/octet-stream"
    headers.update(extra_headers or {})
    if credentials is not None:
        headers["Authorization"] = credentials.authorization
    return urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310


def send(
    method: str,
    url: str,
    credentials: Credentials | None,
    *,
    body: Mapping[str, object] | None = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = TIMEOUT_S,
) -> Response:
    """One request with a JSON ``body`` or raw ``data`` (or neither), and any ``headers`` besides."""
    request = _request(method, url, credentials, body, data, headers)
    try:
        with _OPENER.open(request, timeout=timeout_s) as reply:
            return Response(reply.status, reply.reason, reply.read())
    except urllib.error.HTTPError as e:
        with e:
            return Response(e.code, str(e.reason), e.read())


def ndjson(
    method: str,
    url: str,
    credentials: Credentials | None,
    *,
    body: Mapping[str, object] | None = None,
    timeout_s: float | None = TIMEOUT_S,
) -> Iterator[dict[str, Any]]:
    """The JSON objects of an NDJSON answer as they arrive (``timeout_s`` None: wait for each line for ever, as
    a followed log does); StatusError when it is not a 200."""
    request = _request(method, url, credentials, body, None)
    try:
        reply = _OPENER.open(request, timeout=timeout_s) if timeout_s is not None else _OPENER.open(request)
    except urllib.error.HTTPError as e:
        with e:
            raise StatusError(Response(e.code, str(e.reason), e.read())) from None
    with reply:
        for raw in reply:
            if raw.strip():
                item = json.loads(raw)
                if isinstance(item, dict):
                    yield item


def failed(what: str, reply: Response, err: Out) -> int:
    """Report a refused request (``pyfaasd: what: status reason: body``); the exit status 1."""
    err(f"pyfaasd: {what}: {reply.status} {reply.reason}: {reply.body.strip()}")
    return 1


def table(rows: Sequence[Sequence[str]], out: Out) -> None:
    """Rows as left-aligned columns, the first row the heading."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
