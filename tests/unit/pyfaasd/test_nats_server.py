"""The swarm stack's NATS server (pyfaasd/nats_server.py): which URLs it runs, and a real nats-server started
and stopped in a state dir, with the async queue on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.async_calls import AsyncCall, CallState
from gateway.jetstream_queue import JetStreamCallQueue
from pyfaasd import nats_server
from tests.helpers import free_port
from tests.nats_support import MISSING_REASON, nats_server_installed


def test_only_one_server_on_loopback_is_the_stacks_own() -> None:
    assert nats_server.local_address("nats://127.0.0.1:4222") == ("127.0.0.1", 4222)
    assert nats_server.local_address("nats://localhost") == ("127.0.0.1", 4222)
    assert nats_server.local_address("nats://10.0.0.5:4222") is None  # a server the user runs
    assert nats_server.local_address("nats://127.0.0.1:4222,nats://127.0.0.1:4223") is None  # a cluster
    assert nats_server.local_address("tls://127.0.0.1:4222") is None


async def test_the_stack_starts_a_jetstream_server_in_the_state_dir_and_stops_it(tmp_path: Path) -> None:
    if not nats_server_installed():
        pytest.skip(MISSING_REASON)
    url = f"nats://127.0.0.1:{free_port()}"
    process = nats_server.start(tmp_path, url)
    assert process is not None
    try:
        assert "max_payload: 8MB" in (tmp_path / "nats" / "nats.conf").read_text()
        queue = JetStreamCallQueue(url, bucket="stack")
        try:
            body = b"\xff" * (1024 * 1024)  # the largest async body by default: fits the server's max_payload
            assert await queue.enqueue(AsyncCall("big", "f.openfaas-fn", "f", "POST", "/", (), body))
            assert (await queue.status("big")).status is CallState.QUEUED  # type: ignore[union-attr]
        finally:
            await queue.close()
    finally:
        nats_server.stop(process)
    assert process.poll() is not None
    assert (tmp_path / "nats" / "store" / "jetstream").is_dir()  # file storage in the state dir
    assert nats_server.start(tmp_path, "nats://10.0.0.5:4222") is None
