"""Operator defaults (PYFAASD_DEFAULT_*) against the real engine: applied, recorded apart, not echoed."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.integration.provider.conftest import HELLO
from tests.provider_harness import get

pytestmark = pytest.mark.docker


def test_defaults_apply_to_a_function_that_sets_none(make_provider: Any, name: str) -> None:
    provider = make_provider(
        PYFAASD_DEFAULT_MEMORY="96Mi", PYFAASD_DEFAULT_CPU="250m", PYFAASD_DEFAULT_READ_ONLY_ROOT="true"
    )
    reply = provider.call("POST", "/system/functions", {"service": name, "image": HELLO})
    assert reply.status == 202, reply.text
    [container] = [c for c in provider.containers() if f"com.pyfaasd.function={name}" in c["Labels"]]
    inspected = json.loads(subprocess.run(["docker", "inspect", container["ID"]], capture_output=True,
                                          text=True, check=True).stdout)[0]  # fmt: skip
    host = inspected["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["ReadonlyRootfs"]) == (96 << 20, 250_000_000, True)
    assert (
        inspected["Config"]["Labels"]["com.pyfaasd.defaults"] == f"memory={96 << 20},nanocpus=250000000,read-only-root"
    )
    [ip] = provider.hosts(name)
    assert get(f"http://{ip}:8080/?name=defaults").text == "Hello, defaults!\n"  # runs with a read-only root
    status = provider.call("GET", f"/system/function/{name}").json()
    assert "limits" not in status  # the API echoes the deployment
    assert "readOnlyRootFilesystem" not in status
