"""Faults under a running stack that used to break functions for good (issue 20): each one noticed and repaired."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import ECHO
from tests.provider_harness import ProviderProcess, http, wait_for

pytestmark = pytest.mark.docker

MakeStack = Callable[..., ProviderProcess]


def test_a_bridge_deleted_under_running_functions_is_rebuilt_and_callers_fail_fast_meanwhile(
    make_stack: MakeStack, name: str
) -> None:
    stack = make_stack(PYFAASD_CONNECT_TIMEOUT="1s")
    assert stack.call("POST", "/system/functions", {"service": name, "image": ECHO}).status == 202
    wait_for(lambda: stack.hosts(name), what="the replica in the hosts file")
    url = f"{stack.url}/function/{name}"
    assert http("GET", url, timeout=10).status == 200
    container = stack.containers(running_only=True)[0]["ID"]
    ip = stack.hosts(name)[0]

    subprocess.run(["ip", "link", "del", stack.bridge], check=True)
    broken = time.monotonic()

    # Within seconds the provider says why it is unhealthy, or has already repaired the bridge; a caller that
    # meets the broken network gets a quick 503 rather than a 60 s hang.
    statuses = []
    while time.monotonic() - broken < 15:
        started = time.monotonic()
        reply = http("GET", url, timeout=10)
        statuses.append((reply.status, round(time.monotonic() - started, 2)))
        if reply.status == 200:
            break
        assert reply.status == 503, (reply.status, reply.text)
        assert time.monotonic() - started < 3, statuses
    assert statuses[-1][0] == 200, statuses
    repaired_after = time.monotonic() - broken
    assert repaired_after < 10, statuses
    print(f"\nbridge deleted → function answering again after {repaired_after:.2f}s; calls meanwhile: {statuses}")

    assert http("GET", f"{stack.url}/healthz").status == 200
    assert stack.containers(running_only=True)[0]["ID"] == container  # the same replica, not a new one
    assert stack.hosts(name) == [ip]
    assert "bridge_repaired" in stack.log_path.read_text()
    # A deploy after the repair works (it was a 500 BridgeMissingError before).
    other = f"{name}b"
    assert stack.call("POST", "/system/functions", {"service": other, "image": ECHO}).status == 202
    wait_for(lambda: http("GET", f"{stack.url}/function/{other}", timeout=10).status == 200, what="the new function")
