"""The async queue's contract, on both implementations: SQLite on a real database in a temporary directory, and
JetStream on a real ``nats-server -js`` (one per module, a bucket per test). Then what only SQLite has."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.async_calls import AsyncCall, CallQueue, CallState, Outcome
from gateway.jetstream_queue import JetStreamCallQueue, JetStreamUnavailableError
from gateway.sqlite_queue import SqliteCallQueue
from tests.helpers import free_port
from tests.nats_support import NatsServer, running_nats_server
from tests.queue_support import LEASE_S, QueueMaker


def call(call_id: str, function: str = "f.openfaas-fn", **fields: object) -> AsyncCall:
    values: dict[str, object] = {
        "call_id": call_id,
        "function": function,
        "requested_name": function.split(".")[0],
        "method": "POST",
        "target": "/p?q=1",
        "headers": (("X-A", "1"), ("X-A", "2"), ("X-Call-Id", call_id)),
        "body": b"body \x00\xff",
        "callback_url": "http://127.0.0.1:1/cb",
    }
    values.update(fields)
    return AsyncCall(**values)  # type: ignore[arg-type]


OK = Outcome(200, (("Content-Type", "text/plain"),), b"answer", 0.25)


@pytest.fixture
def queue(queues: QueueMaker) -> CallQueue:
    return queues()


@pytest.fixture
async def sqlite_queue(tmp_path: Path) -> AsyncIterator[SqliteCallQueue]:
    made = SqliteCallQueue(tmp_path / "async" / "queue.db")
    yield made
    await made.close()


async def test_a_call_goes_through_claim_complete_and_callback(queue: CallQueue) -> None:
    assert await queue.enqueue(call("a", accepted_at=5.0))
    assert (await queue.status("a")).as_json() == {"status": "queued", "attempts": 0, "functionStatus": None}  # type: ignore[union-attr]
    ready = await queue.ready()
    assert (dict(ready.calls), dict(ready.callbacks)) == ({"f.openfaas-fn": 5.0}, {})
    [claimed] = await queue.claim({"f.openfaas-fn": 10}, 1e12)
    assert claimed.attempts == 1
    assert claimed.call.headers == call("a").headers  # order and repeats kept
    assert claimed.call.body == b"body \x00\xff"
    assert await queue.claim({"f.openfaas-fn": 10}, 1e12) == []  # claimed once
    assert (await queue.status("a")).status is CallState.RUNNING  # type: ignore[union-attr]

    await queue.complete(claimed.seq, OK, succeeded=True, callback=True)
    assert (await queue.status("a")).as_json() == {"status": "done", "attempts": 1, "functionStatus": 200}  # type: ignore[union-attr]
    assert list((await queue.ready()).callbacks) == ["f.openfaas-fn"]
    [pending] = await queue.claim_callbacks({"f.openfaas-fn": 10}, 1e12)
    assert (pending.outcome, pending.attempts, pending.callback_url) == (OK, 1, "http://127.0.0.1:1/cb")
    assert await queue.claim_callbacks({"f.openfaas-fn": 10}, 1e12) == []
    await queue.callback_done(pending.seq, delivered=True)
    ready = await queue.ready()
    assert (dict(ready.calls), dict(ready.callbacks)) == ({}, {})
    assert await queue.purge(1e12) == 1
    assert await queue.status("a") is None


async def test_claims_of_a_dead_dispatcher_are_released_and_run_again(queues: QueueMaker) -> None:
    first = queues()
    for i in range(3):
        await first.enqueue(call(f"c{i}"))
    claimed = await first.claim({"f.openfaas-fn": 2}, 1e12)
    await first.complete(claimed[0].seq, OK, succeeded=True, callback=True)
    [pending] = await first.claim_callbacks({"f.openfaas-fn": 5}, 1e12)
    await first.close()  # as after a kill -9: one call running, one callback running, nothing recorded

    # The next dispatcher, once the dead one's claims are over their lease (JetStream; SQLite has no lease: one
    # dispatcher per state dir, so every claim it finds is a dead one's).
    second = queues(clock=lambda: time.time() + LEASE_S + 1)
    assert await second.recover() == 2
    again = await second.claim({"f.openfaas-fn": 10}, 1e12)
    assert sorted(c.call.call_id for c in again) == ["c1", "c2"]  # c0's outcome was recorded: not again
    assert {c.call.call_id: c.attempts for c in again} == {"c1": 2, "c2": 1}
    [callback] = await second.claim_callbacks({"f.openfaas-fn": 5}, 1e12)
    assert (callback.call_id, callback.attempts) == (pending.call_id, 2)


async def test_a_retry_waits_until_it_is_due(queue: CallQueue) -> None:
    await queue.enqueue(call("r", accepted_at=50.0))
    [claimed] = await queue.claim({"f.openfaas-fn": 1}, 100.0)
    await queue.retry_at(claimed.seq, 200.0, Outcome(500, (), b"", 0.1))
    assert (await queue.status("r")).as_json() == {"status": "queued", "attempts": 1, "functionStatus": 500}  # type: ignore[union-attr]
    assert dict((await queue.ready()).calls) == {"f.openfaas-fn": 200.0}
    assert await queue.claim({"f.openfaas-fn": 1}, 199.0) == []
    [again] = await queue.claim({"f.openfaas-fn": 1}, 200.0)
    assert again.attempts == 2


async def test_claims_are_per_function_oldest_first_and_limited(queue: CallQueue) -> None:
    for i in range(5):
        await queue.enqueue(call(f"a{i}", accepted_at=10.0 + i))
    await queue.enqueue(call("b0", "b.openfaas-fn", accepted_at=20.0))
    assert dict((await queue.ready()).calls) == {"f.openfaas-fn": 10.0, "b.openfaas-fn": 20.0}
    claimed = await queue.claim({"f.openfaas-fn": 2, "b.openfaas-fn": 9}, 1e12)
    assert [c.call.call_id for c in claimed] == ["a0", "a1", "b0"]
    counts = await queue.counts()
    assert (dict(counts.queued), dict(counts.callbacks)) == ({"f.openfaas-fn": 3}, {})


async def test_the_same_call_id_twice_is_two_calls_and_the_status_is_the_latest(queue: CallQueue) -> None:
    assert await queue.enqueue(call("same"))
    assert await queue.enqueue(call("same"))
    assert len(await queue.claim({"f.openfaas-fn": 9}, 1e12)) == 2


async def test_a_dedupe_key_is_accepted_once(queue: CallQueue) -> None:
    assert await queue.enqueue(call("x", dedupe="slot-1"))
    assert not await queue.enqueue(call("y", dedupe="slot-1"))
    assert await queue.status("y") is None


async def test_cron_slot_and_its_call_are_one_transaction(queue: CallQueue) -> None:
    assert await queue.last_cron_slot("f.openfaas-fn", "* * * * *") is None
    await queue.fire_cron("f.openfaas-fn", "* * * * *", 60.0, None)
    assert await queue.last_cron_slot("f.openfaas-fn", "* * * * *") == 60.0
    await queue.fire_cron("f.openfaas-fn", "* * * * *", 120.0, call("cron", dedupe="k"))
    assert await queue.last_cron_slot("f.openfaas-fn", "* * * * *") == 120.0
    assert (await queue.status("cron")).status is CallState.QUEUED  # type: ignore[union-attr]


async def test_concurrent_enqueues_share_commits(sqlite_queue: SqliteCallQueue) -> None:
    queue = sqlite_queue
    await queue.enqueue(call("warm-up"))
    before = queue.batches
    results = await asyncio.gather(*(queue.enqueue(call(f"g{i}")) for i in range(200)))
    assert all(results)
    assert queue.batches - before < 200  # group commit: fewer transactions than calls
    assert (await queue.counts()).queued == {"f.openfaas-fn": 201}


async def test_the_database_is_wal_with_full_sync_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    queue = SqliteCallQueue(path)
    await queue.enqueue(call("kept"))
    # Read it from another connection while the writer is open, as another gateway worker would.
    with sqlite3.connect(path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT call_id FROM calls").fetchall() == [("kept",)]
    await queue.close()
    reopened = SqliteCallQueue(path)
    try:
        assert (await reopened.status("kept")).status is CallState.QUEUED  # type: ignore[union-attr]
    finally:
        await reopened.close()


async def test_one_failing_operation_does_not_undo_the_others_in_its_batch(sqlite_queue: SqliteCallQueue) -> None:
    queue = sqlite_queue
    await queue.enqueue(call("w"))

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO calls (call_id) VALUES ('half')")  # NOT NULL columns missing: fails

    outcomes = await asyncio.gather(queue._submit(broken), queue.enqueue(call("ok")), return_exceptions=True)
    assert isinstance(outcomes[0], sqlite3.IntegrityError)
    assert outcomes[1] is True
    assert await queue.status("ok") is not None
    assert await queue.status("half") is None


async def test_a_closed_queue_refuses_work(queues: QueueMaker) -> None:
    queue = queues()
    await queue.enqueue(call("a"))
    await queue.close()
    with pytest.raises(RuntimeError, match="closed"):
        await queue.enqueue(call("b"))


# -- several gateways on one queue (for SQLite: several workers on one database)


async def test_two_dispatchers_racing_never_claim_one_call_twice(queues: QueueMaker) -> None:
    one, two = queues(), queues()
    for i in range(40):
        await (one if i % 2 else two).enqueue(call(f"r{i}", accepted_at=float(i + 1)))
    claimed: list[str] = []
    for _ in range(30):
        rounds = await asyncio.gather(one.claim({"f.openfaas-fn": 3}, 1e12), two.claim({"f.openfaas-fn": 3}, 1e12))
        claimed += [c.call.call_id for batch in rounds for c in batch]
        if len(claimed) == 40:
            break
        await asyncio.sleep(0.01)  # let a mirror catch up with the other's claims
    assert sorted(claimed) == sorted(f"r{i}" for i in range(40))  # each once


async def test_a_call_accepted_by_one_gateway_is_seen_by_another(queues: QueueMaker) -> None:
    one, two = queues(), queues()
    await two.ready()  # connected before the call exists: it arrives through the watcher
    await one.enqueue(call("seen"))
    async with asyncio.timeout(5):
        while await two.status("seen") is None:
            await asyncio.sleep(0.01)
    assert list((await two.ready()).calls) == ["f.openfaas-fn"]


@pytest.fixture
def jetstream(queues: QueueMaker) -> QueueMaker:
    if queues.kind != "jetstream":
        pytest.skip("JetStream only: leases and a NATS server (SQLite has one dispatcher per state dir)")
    return queues


async def test_a_live_gateways_claim_is_left_alone_and_a_dead_ones_taken_after_its_lease(
    jetstream: QueueMaker,
) -> None:
    live, other = jetstream(), jetstream()
    await live.enqueue(call("held"))
    [held] = await live.claim({"f.openfaas-fn": 1}, 1e12)
    assert await other.recover() == 0  # a gateway starting its dispatcher leaves a live claim alone
    assert await other.claim({"f.openfaas-fn": 1}, 1e12) == []

    later = jetstream(clock=lambda: time.time() + LEASE_S + 1)  # the lease ran out: its holder is dead
    [taken] = await later.claim({"f.openfaas-fn": 1}, 1e12)
    assert (taken.call.call_id, taken.attempts) == ("held", 2)
    await live.complete(held.seq, OK, succeeded=True, callback=False)  # too late: the claim is lost, not recorded
    assert (await later.status("held")).status is CallState.RUNNING  # type: ignore[union-attr]
    await later.complete(taken.seq, OK, succeeded=True, callback=False)
    assert (await later.status("held")).as_json() == {"status": "done", "attempts": 2, "functionStatus": 200}  # type: ignore[union-attr]


async def test_a_running_claim_renews_its_lease(jetstream: QueueMaker, nats_server: NatsServer) -> None:
    short = JetStreamCallQueue(nats_server.url, bucket=f"renew_{time.time_ns()}", lease_s=0.3)
    other = JetStreamCallQueue(nats_server.url, bucket=short.bucket, lease_s=0.3)
    try:
        await short.enqueue(call("long"))
        [claimed] = await short.claim({"f.openfaas-fn": 1}, 1e12)
        await asyncio.sleep(1.0)  # three leases: renewed every 0.1 s
        assert await other.claim({"f.openfaas-fn": 1}, 1e12) == []
        assert await other.recover() == 0
        await short.close()  # a dead gateway renews nothing: its claim is taken once the lease has run out
        await asyncio.sleep(0.4)
        [taken] = await other.claim({"f.openfaas-fn": 1}, 1e12)
        assert (taken.call.call_id, taken.attempts, claimed.attempts) == ("long", 2, 1)
    finally:
        await short.close()
        await other.close()


async def test_an_accepted_call_survives_a_kill_of_the_nats_server(jetstream: QueueMaker, tmp_path: Path) -> None:
    with running_nats_server(tmp_path / "own") as server:
        queue = JetStreamCallQueue(server.url, bucket="survivor")
        try:
            await queue.enqueue(call("kept"))  # acknowledged: in the server's file store
        finally:
            server.process.kill()  # kill -9, right after the acknowledgement
            server.process.wait()
            await queue.close()
    with running_nats_server(tmp_path / "own") as server:
        again = JetStreamCallQueue(server.url, bucket="survivor")
        try:
            assert (await again.status("kept")).status is CallState.QUEUED  # type: ignore[union-attr]
            [claimed] = await again.claim({"f.openfaas-fn": 1}, 1e12)
            assert claimed.call.body == b"body \x00\xff"
        finally:
            await again.close()


async def test_a_gateway_started_before_its_nats_server_connects_once_it_is_up(
    jetstream: QueueMaker, tmp_path: Path
) -> None:
    port = free_port()
    queue = JetStreamCallQueue(f"nats://127.0.0.1:{port}", bucket="late")
    try:
        with pytest.raises(JetStreamUnavailableError, match=f"cannot connect to NATS at nats://127.0.0.1:{port}"):
            await queue.enqueue(call("early"))  # the 202 is not given: the edge answers 503
        with running_nats_server(tmp_path / "late", port):
            assert await queue.enqueue(call("late"))
            assert await queue.recover() == 0
    finally:
        await queue.close()


async def test_after_a_restart_of_the_nats_server_a_gateway_sees_other_gateways_calls_again(
    jetstream: QueueMaker, tmp_path: Path
) -> None:
    port = free_port()
    with running_nats_server(tmp_path / "restarted", port) as server:
        first = JetStreamCallQueue(server.url, bucket="restarted")
        await first.enqueue(call("before"))
    try:
        with running_nats_server(tmp_path / "restarted", port) as server:  # same store, same address
            second = JetStreamCallQueue(server.url, bucket="restarted")
            try:
                await second.enqueue(call("after"))  # only the first's watcher can tell it about this one
                async with asyncio.timeout(10):
                    while await first.status("after") is None:
                        await asyncio.sleep(0.05)
                assert await first.enqueue(call("again"))  # and it writes again
                assert sorted(c.call.call_id for c in await first.claim({"f.openfaas-fn": 9}, 1e12)) == [
                    "after",
                    "again",
                    "before",
                ]
            finally:
                await second.close()
    finally:
        await first.close()
