"""Plain helpers for tests (importable as ``helpers``: pyproject puts tests/ on the pytest path)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
UPSTREAM_SERVER = FIXTURES / "upstream_server.py"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def is_root() -> bool:
    return os.geteuid() == 0


def http_mode_env(**extra: str) -> dict[str, str]:
    """The environment of an http-mode watchdog in front of tests/fixtures/upstream_server.py."""
    upstream_port = free_port()
    return {
        "mode": "http",
        "fprocess": f"{sys.executable} {UPSTREAM_SERVER} {upstream_port}",
        "upstream_url": f"http://127.0.0.1:{upstream_port}",
        "prefix_logs": "false",
        **extra,
    }


async def wait_http_ok(port: int, path: str = "/_/health", timeout: float = 20.0) -> None:
    """Poll http://127.0.0.1:<port><path> until it answers 200."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


def installable_executable() -> Path:
    """An executable for the unit files in tests: the venv's ``pyfaasd`` script, or ``/usr/bin/env`` when this
    checkout lives where the units treat paths specially (/tmp and /var/tmp are refused because of
    PrivateTmp=yes; /home and /root make ProtectHome read-only). The install and unit tests need an existing
    executable whose place does not change what they check; CI may clone anywhere."""
    script = Path(sys.executable).parent / "pyfaasd"
    if not str(script.absolute()).startswith(("/tmp/", "/var/tmp/", "/home/", "/root/")):
        return script
    return Path("/usr/bin/env")
