"""``pyfaasd up`` against slow and idle clients on both of its listeners, the gateway's and the provider's.

Both read PYFAASD_HEADER_TIMEOUT and PYFAASD_IDLE_TIMEOUT (issue 20, point 4); they share one process and so one
open-file limit, which ``up`` raises to the hard limit at start and logs.
"""

from __future__ import annotations

import asyncio
import json
import time

from tests.slow_clients import HEAD, closed, connection, on_time, still_open, trickle
from tests.stack_fixtures import MakeStack, docker_only


@docker_only(
    "swarm: the provider listens in the anchor's network namespace, out of the host's reach; both backends' listeners "
    "are the same servicekit/client_limits.py"
)
async def test_both_listeners_close_slow_heads_and_idle_connections(make_stack: MakeStack) -> None:
    stack = make_stack(PYFAASD_HEADER_TIMEOUT="1s", PYFAASD_IDLE_TIMEOUT="2s")
    assert stack.gateway_port is not None
    for port in (stack.gateway_port, stack.port):
        async with connection(port) as (slow_reader, slow_writer), connection(port) as (idle_reader, _):
            started = time.monotonic()
            sender = asyncio.create_task(trickle(slow_writer, HEAD))
            assert await still_open(slow_reader, 0.7)
            assert await closed(slow_reader) == b""
            assert on_time(time.monotonic() - started, 1.0)
            sender.cancel()
            assert await closed(idle_reader) == b""
            assert on_time(time.monotonic() - started, 2.0)

    lines = [json.loads(line) for line in stack.log_path.read_text().splitlines() if line.startswith("{")]
    limit = next(line for line in lines if line.get("event") == "open_file_limit")
    assert limit["soft"] == limit["hard"]
    assert limit["gateway_max_connections"] == limit["soft"] * 3 // 4
