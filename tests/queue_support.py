"""Both async queues behind one maker, so the same contract tests run against SQLite and JetStream."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

from gateway.async_calls import CallQueue
from gateway.jetstream_queue import JetStreamCallQueue
from gateway.sqlite_queue import SqliteCallQueue

LEASE_S = 5.0  # the JetStream queue's claim lease in these tests
_buckets = itertools.count()


class QueueMaker:
    """Opens queues on one store (the same database file, or the same JetStream bucket) and closes them all.

    ``clock`` is the queue's wall clock: the JetStream queue's leases run on it (the SQLite queue stamps its
    records with it), so a test can stand a second queue after the lease of a dead one.
    """

    def __init__(self, kind: str, directory: Path, nats_url: str | None) -> None:
        self.kind = kind
        self._directory = directory
        self._nats_url = nats_url
        self._bucket = f"test_{next(_buckets)}_{time.time_ns()}"
        self._opened: list[CallQueue] = []

    def __call__(self, clock: Callable[[], float] = time.time) -> CallQueue:
        queue: CallQueue
        if self._nats_url is None:
            queue = SqliteCallQueue(self._directory / "async" / "queue.db", clock=clock)
        else:
            queue = JetStreamCallQueue(self._nats_url, bucket=self._bucket, lease_s=LEASE_S, clock=clock)
        self._opened.append(queue)
        return queue

    async def close(self) -> None:
        for queue in self._opened:
            await queue.close()
