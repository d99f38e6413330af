"""A real ``nats-server -js`` for tests: on a free loopback port, its store in a temporary directory.

Debian's ``nats-server`` (scripts/setup installs it). ``max_payload`` is raised to 8 MiB, as the stack's server
needs for the async queue's largest calls (a 1 MiB body, base64 in a JSON record).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
MISSING_REASON = "nats-server is not installed (scripts/setup installs Debian's nats-server)"


def nats_server_installed() -> bool:
    return Path(NATS_SERVER).is_file()


@dataclass(frozen=True, slots=True)
class NatsServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nats-server did not listen on 127.0.0.1:{port}")


@contextmanager
def running_nats_server(directory: Path, port: int | None = None) -> Iterator[NatsServer]:
    """A JetStream server on 127.0.0.1 with its store under ``directory`` (started again on the same directory,
    it reads back what it stored); stopped (SIGTERM) on exit unless the test killed it."""
    if not nats_server_installed():
        pytest.skip(MISSING_REASON)
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "nats.conf"
    config.write_text(
        f'listen: "127.0.0.1:{port}"\nmax_payload: 8MB\njetstream {{\n  store_dir: "{directory / "store"}"\n}}\n'
    )
    log = (directory / "nats.log").open("wb")
    process = subprocess.Popen([NATS_SERVER, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process)
        yield NatsServer(f"nats://127.0.0.1:{port}", port, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
