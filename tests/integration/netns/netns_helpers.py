"""Plain helpers for the netns tests: run code inside a namespace, tiny TCP servers, leftover checks."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address
from typing import TypeVar

from netconf import Network, _netlink
from tests.net_support import TEST_SUPERNET, force_cleanup, free_test_subnet, leftovers

T = TypeVar("T")

__all__ = ["TEST_SUPERNET", "force_cleanup", "free_test_subnet", "leftovers"]

# The port the tests' host-side servers listen on, standing for the gateway: functions may reach it.
GATEWAY_PORT = 18080

MakeNetwork = Callable[..., Awaitable[Network]]


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread inside namespace ``name``; sockets it creates stay in that namespace."""
    with _netlink.open_netns(name) as fd:
        return _netlink.run_in_netns(fd, fn)


def ip_out(ns: str | None, *args: str) -> str:
    """``ip <args>`` on the host or inside a named namespace."""
    prefix = ["ip"] if ns is None else ["ip", "-n", ns]
    return subprocess.run([*prefix, *args], capture_output=True, text=True, check=True).stdout


class Server:
    """A TCP server on a listening socket (possibly made inside a namespace): answers b"pong:<tag>" and closes."""

    def __init__(self, sock: socket.socket, tag: str) -> None:
        self.sock = sock
        self.tag = tag
        self._stop = threading.Event()
        sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.sendall(f"pong:{self.tag}".encode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def listen(ns: str | None, ip: IPv4Address, port: int) -> socket.socket:
    def make() -> socket.socket:
        return socket.create_server((str(ip), port), family=socket.AF_INET)

    return make() if ns is None else in_netns(ns, make)


def tcp_ask(ip: IPv4Address, port: int, timeout: float = 5.0) -> tuple[bytes, float]:
    """Connect and read the server's answer; returns it and how long the connect took (seconds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        started = time.perf_counter()
        sock.connect((str(ip), port))
        took = time.perf_counter() - started
        return sock.recv(64), took


def tcp_ask_from(ns: str, ip: IPv4Address, port: int) -> tuple[bytes, float]:
    """``tcp_ask`` from inside a namespace."""
    return in_netns(ns, lambda: tcp_ask(ip, port))


StartServer = Callable[[str | None, IPv4Address, int, str], Server]
