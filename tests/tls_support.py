"""Self-signed certificates for the TLS tests, made with the ``openssl`` command (no ACME server here)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import aiohttp.abc
import pytest


@dataclass(frozen=True, slots=True)
class Certificate:
    cert: Path
    key: Path


def make_certificate(cert: Path, key: Path, name: str, serial: int = 1) -> Certificate:
    """A self-signed P-256 certificate for ``name`` (CN and subjectAltName) with this serial number."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
            "-addext", f"subjectAltName=DNS:{name}", "-set_serial", str(serial),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


def client_context(*trusted: Path) -> ssl.SSLContext:
    """A client context that trusts exactly these (self-signed) certificates and checks the host name."""
    context = ssl.create_default_context()
    context.load_verify_locations(cadata="".join(path.read_text() for path in trusted))
    return context


def peer_serial(context: ssl.SSLContext, port: int, server_name: str | None) -> tuple[str, int]:
    """The CN and serial of the certificate the server at 127.0.0.1:port shows for ``server_name``."""
    if server_name is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    text = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-serial"], input=der, capture_output=True
    ).stdout.decode()
    fields = dict(line.split("=", 1) for line in text.splitlines())
    return fields["subject"].rsplit("CN", 1)[1].strip(" =").strip(), int(fields["serial"], 16)


class LoopbackResolver(aiohttp.abc.AbstractResolver):
    """Every name is 127.0.0.1 (``curl --resolve`` for aiohttp), so the URL's host is the SNI and the Host."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[aiohttp.abc.ResolveResult]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass
