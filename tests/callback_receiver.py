"""A real callback receiver for async calls: an HTTP server on 127.0.0.1 in a thread of the test (or bench).

It records every POST (path, headers, body, arrival time). A path starting with ``/slow`` is answered after
:attr:`CallbackReceiver.slow_s` seconds, so one receiver can play a slow and a fast one at once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Callback:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def call_id(self) -> str:
        return self.headers.get("X-Call-Id", "")


class CallbackReceiver:
    def __init__(self, slow_s: float = 3.0, bind: str = "127.0.0.1", url_host: Callable[[], str] | None = None) -> None:
        """``bind``: the address it listens on; ``url_host``: the host its URL names, asked when the URL is read
        (default: ``bind``)."""
        self.slow_s = slow_s
        self.got: list[Callback] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.startswith("/slow"):
                    time.sleep(receiver.slow_s)
                callback = Callback(self.path, dict(self.headers.items()), body, time.monotonic())
                with receiver._lock:
                    receiver.got.append(callback)
                    receiver._lock.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a sender killed mid-connection (the kill -9 tests) resets it: nothing to report

        self._server = Server((bind, 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._url_host = url_host or (lambda: bind)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self._url_host()}:{self.port}"

    def wait_for(self, count: int, timeout: float = 30.0, path: str | None = None) -> list[Callback]:
        """The callbacks (to ``path`` if given) once there are ``count`` of them; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [c for c in self.got if path is None or c.path == path]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(got)} callbacks of {count} after {timeout}s")
                self._lock.wait(left)

    def per_call(self) -> Counter[str]:
        with self._lock:
            return Counter(c.call_id for c in self.got)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
