"""Routes on the real stack (``pyfaasd up``, Docker, the echo image): a function at its own domain over HTTP and
HTTPS (``curl --resolve``), under a short path, a conflicting domain refused, a deleted function's route freed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port
from tests.provider_harness import http
from tests.stack_fixtures import ECHO, MakeStack
from tests.tls_support import make_certificate

pytestmark = pytest.mark.docker


def curl(*args: str) -> dict[str, object]:
    done = subprocess.run(["curl", "-sS", "--fail", "--max-time", "30", *args], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    echoed: dict[str, object] = json.loads(done.stdout)
    return echoed


def test_a_function_at_its_own_domain_and_path(make_stack: MakeStack, name: str, tmp_path: Path) -> None:
    domain = f"{name}.example.com"
    certs = tmp_path / "certs"
    cert = make_certificate(certs / domain / "fullchain.pem", certs / domain / "privkey.pem", domain)
    tls_port = free_port()
    stack = make_stack(PYFAASD_TLS_DIR=str(certs), PYFAASD_TLS_ADDR=f"127.0.0.1:{tls_port}", PYFAASD_AUTOSCALE="false")
    port = stack.gateway_port
    annotations = {"com.pyfaasd.domain": domain, "com.pyfaasd.path": f"/{name}"}
    reply = stack.call("POST", "/system/functions", {"service": name, "image": ECHO, "annotations": annotations})
    assert reply.status == 202, reply.text
    try:
        # The root of its own domain, and its own paths unprefixed.
        root = curl("--resolve", f"{domain}:{port}:127.0.0.1", f"http://{domain}:{port}/")
        assert root["path"] == "/"
        download = curl("--resolve", f"{domain}:{port}:127.0.0.1", f"http://{domain}:{port}/download/x")
        headers = download["headers"]
        assert isinstance(headers, dict)
        assert download["path"] == "/download/x"
        assert (headers["X-Forwarded-Host"], headers["X-Forwarded-Proto"]) == (f"{domain}:{port}", "http")
        assert "X-Forwarded-Prefix" not in headers
        # The same over HTTPS, with the certificate of its name.
        secure = curl("--resolve", f"{domain}:{tls_port}:127.0.0.1", "--cacert", str(cert.cert),
                      f"https://{domain}:{tls_port}/download/x?y=1")  # fmt: skip
        secure_headers = secure["headers"]
        assert isinstance(secure_headers, dict)
        assert (secure["path"], secure_headers["X-Forwarded-Proto"]) == ("/download/x?y=1", "https")
        # Under its short path, the prefix stripped and named.
        prefixed = curl(f"http://127.0.0.1:{port}/{name}/download/x")
        prefixed_headers = prefixed["headers"]
        assert isinstance(prefixed_headers, dict)
        assert prefixed["path"] == "/download/x"
        assert prefixed_headers["X-Forwarded-Prefix"] == f"/{name}"
        # /function/ still works, and the gateway's own paths on other hosts.
        assert http("GET", f"{stack.url}/function/{name}/a").json()["path"] == "/a"
        assert http("GET", f"{stack.url}/healthz").status == 200

        # Another function asking for the domain: 409 naming the holder, nothing made.
        taken = stack.call(
            "POST",
            "/system/functions",
            {"service": f"{name}b", "image": ECHO, "annotations": {"com.pyfaasd.domain": domain}},
        )
        assert taken.status == 409
        assert f"{domain} is already routed to function {name}.openfaas-fn" in taken.text
        assert not [c for c in stack.containers() if f"com.pyfaasd.function={name}b" in c["Labels"]]

        listed = subprocess.run(
            [sys.executable, "-m", "pyfaasd.cli", "routes", "--json"],
            env=stack.env, cwd=ROOT, capture_output=True, check=True,
        )  # fmt: skip
        assert {(r["kind"], r["route"]) for r in json.loads(listed.stdout)} == {
            ("domain", domain),
            ("path", f"/{name}"),
        }
    finally:
        assert stack.call("DELETE", "/system/functions", {"functionName": name}).status in (200, 202)

    # Deleting it frees the domain.
    freed = stack.call(
        "POST",
        "/system/functions",
        {"service": f"{name}b", "image": ECHO, "annotations": {"com.pyfaasd.domain": domain}},
    )
    assert freed.status == 202, freed.text
    again = curl("--resolve", f"{domain}:{port}:127.0.0.1", f"http://{domain}:{port}/after")
    assert again["path"] == "/after"
    assert stack.call("DELETE", "/system/functions", {"functionName": f"{name}b"}).status in (200, 202)
