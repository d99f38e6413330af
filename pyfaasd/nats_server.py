"""The NATS server of the swarm stack: ``pyfaasd up --backend swarm`` runs Debian's ``nats-server`` with JetStream
for the gateway's async queue (gateway/jetstream_queue.py), inside the anchor's network namespace; so does the
``pyfaasd-nats`` unit of ``pyfaasd install --backend swarm`` (``pyfaasd nats-server``: :func:`command`, then exec).

Only when ``PYFAASD_NATS_URL`` names one server on loopback (the default, ``nats://127.0.0.1:4222``): any other
URL is a server the user runs (on another node, a cluster), and ``up`` leaves it alone. The store is
``<state>/nats/store`` (file storage, so accepted calls survive a restart of the stack), the configuration
``<state>/nats/nats.conf``, its output ``<state>/nats/nats.log``. ``max_payload`` is 8 MB: a queued call holds its
body (up to ``PYFAASD_ASYNC_MAX_BODY_BYTES``, 1 MiB by default) base64 in a JSON record.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

START_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 10.0
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost"})
PR_SET_PDEATHSIG: Final = 1


class NatsServerError(Exception):
    """The stack's NATS server cannot be started."""


def local_address(url: str) -> tuple[str, int] | None:
    """``(host, port)`` when ``url`` is one NATS server on loopback, which the stack runs; else None."""
    if "," in url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme != "nats" or parts.hostname not in LOOPBACK:
        return None
    return "127.0.0.1", parts.port or 4222


def config_text(host: str, port: int, store: Path) -> str:
    return f'listen: "{host}:{port}"\nmax_payload: 8MB\njetstream {{\n  store_dir: "{store}"\n}}\n'


def command(state_dir: Path, url: str) -> list[str] | None:
    """The command line of the server ``url`` names if it is the stack's own (on loopback), its configuration
    written to ``<state>/nats/nats.conf``; None when ``url`` is a server the user runs."""
    address = local_address(url)
    if address is None:
        return None
    binary = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).is_file()), None
    )
    if binary is None:
        raise NatsServerError(
            "nats-server is not installed (apt install nats-server, or scripts/setup): the async queue of the swarm "
            "backend needs it; or set PYFAASD_NATS_URL to a NATS server with JetStream that you run"
        )
    directory = state_dir / "nats"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = directory / "nats.conf"
    config.write_text(config_text(*address, directory / "store"))
    return [binary, "-c", str(config)]


def start(state_dir: Path, url: str) -> subprocess.Popen[bytes] | None:
    """Start the server ``url`` names if it is the stack's own (on loopback), once it listens; None otherwise."""
    argv = command(state_dir, url)
    address = local_address(url)
    if argv is None or address is None:
        return None
    log_path = state_dir / "nats" / "nats.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_stop_with_parent(os.getpid())
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise NatsServerError(f"nats-server exited with {process.returncode}: {' | '.join(tail)}")
        try:
            with socket.create_connection(address, timeout=0.2):
                return process
        except OSError:
            if time.monotonic() > deadline:
                stop(process)
                raise NatsServerError(f"nats-server did not listen on {address[0]}:{address[1]}") from None
            time.sleep(0.05)


def _stop_with_parent(parent: int) -> Callable[[], None]:
    """For the child, before it runs nats-server: SIGTERM when ``up`` dies, however it dies. A kill -9 of ``up``
    would otherwise leave the server running in the anchor's namespace, holding the port and the store, and the next
    ``up`` (the same anchor is kept) could not start its own."""

    def arm() -> None:
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0 or os.getppid() != parent:
            os._exit(1)  # not armed, or ``up`` is gone already

    return arm


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (nats-server flushes its store and exits), SIGKILL after STOP_TIMEOUT_S; its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
