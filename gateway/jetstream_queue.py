"""The async queue several gateways share: a NATS JetStream key-value bucket (``PYFAASD_BACKEND=swarm``).

One key per call, ``call.<seq>``, holding the whole record (the request, its state, attempts, due time, the
recorded answer, the callback's state, and the claim: ``owner`` and ``lease_until``) as JSON. Every change is a
compare-and-set on the key's revision (``update(key, value, last=revision)``), so of two gateways that try to
claim one call, one wins and the other skips it.

**Durable before the 202**: :meth:`JetStreamCallQueue.enqueue` is a ``create`` on the bucket (file storage); it
returns once JetStream has acknowledged the message, that is once the server has written it to its store. A
dedupe key (cron slots) makes the key itself: ``call.<seq>`` with ``seq`` derived from the key, so a second
``create`` of it fails and the call is accepted once.

**Reads are local**: every gateway keeps a mirror of the bucket from a KV watcher, so ``ready``, ``counts``,
``status`` and the choice of calls to claim cost no round trip. A gateway's own writes go into its mirror at
once (read your writes); another gateway's arrive through the watcher within milliseconds, and a new call from
another gateway rings the local dispatcher (``on_work``).

**Claims carry a lease**: a claim records its owner (this queue's random id) and ``lease_until`` (now +
``lease_s``), renewed every ``lease_s / 3`` while the call or callback runs. A claim whose lease ran out belongs
to a dispatcher that died (or lost the server): :meth:`recover` releases such claims, and :meth:`claim` /
:meth:`claim_callbacks` take them as if they were queued (their attempt counted). That is what "a dead
dispatcher's claims come back" means once dispatchers run in several gateways, each holding the lock of its own
state dir: a live gateway's claims are never taken, a dead one's after at most ``lease_s``. Leases compare wall
clocks of different nodes: keep them in sync (NTP); a clock ``lease_s`` ahead would take live claims. A dispatcher that
finds its claim taken when it records the outcome logs ``async_claim_lost`` and records nothing (the call runs
again elsewhere: at least once).

Cron slots are keys ``cron.<digest of function and schedule>``, moved forward by compare-and-set after the slot's
call was created: a crash between the two fires the slot again, and its dedupe key makes that a no-op.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import nats
import structlog
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from gateway.async_calls import (
    AsyncCall,
    CallbackState,
    CallState,
    CallStatus,
    ClaimedCall,
    Headers,
    Outcome,
    PendingCallback,
    QueueCounts,
    ReadyWork,
)

log = structlog.get_logger("gateway.async")

BUCKET: Final = "pyfaasd_async"
LEASE_S: Final = 15.0
CONNECT_TIMEOUT_S: Final = 2.0
RECONNECT_WAIT_S: Final = 1.0
REQUEST_TIMEOUT_S: Final = 5.0  # a JetStream publish not acknowledged by then fails (the caller gets 503)
_SEQ_MASK: Final = (1 << 62) - 1
GONE_KEPT: Final = 65536  # deleted keys remembered, so that a late older revision does not bring one back


class QueueClosedError(RuntimeError):
    """The queue was closed."""


class JetStreamUnavailableError(RuntimeError):
    """The NATS server cannot be reached or its JetStream bucket cannot be used."""


@dataclass(frozen=True, slots=True)
class Record:
    """A call as stored under ``call.<seq>``."""

    seq: int
    call_id: str
    function: str
    requested_name: str
    method: str
    target: str
    headers: Headers
    body: bytes | None
    callback_url: str | None
    dedupe: str | None
    state: CallState
    attempts: int
    due_at: float
    accepted_at: float
    function_status: int | None = None
    duration_s: float | None = None
    response_headers: Headers | None = None
    response_body: bytes | None = None
    callback_state: CallbackState | None = None
    callback_attempts: int = 0
    callback_due_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    lease_until: float = 0.0

    @property
    def active(self) -> bool:
        """Something is left to do: the invocation or the callback."""
        return self.state in (CallState.QUEUED, CallState.RUNNING) or self.callback_state in (
            CallbackState.PENDING,
            CallbackState.RUNNING,
        )

    def encode(self) -> bytes:
        fields = dataclasses.asdict(self)
        for name in ("body", "response_body"):
            value = fields[name]
            fields[name] = None if value is None else base64.b64encode(value).decode()
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Record:
        fields: dict[str, Any] = json.loads(data)
        for name in ("body", "response_body"):
            value = fields[name]
            fields[name] = None if value is None else base64.b64decode(value)
        for name in ("headers", "response_headers"):
            value = fields[name]
            fields[name] = None if value is None else tuple((str(k), str(v)) for k, v in value)
        fields["state"] = CallState(fields["state"])
        state = fields["callback_state"]
        fields["callback_state"] = None if state is None else CallbackState(state)
        return cls(**fields)

    def call(self) -> AsyncCall:
        return AsyncCall(
            call_id=self.call_id,
            function=self.function,
            requested_name=self.requested_name,
            method=self.method,
            target=self.target,
            headers=self.headers,
            body=self.body or b"",
            callback_url=self.callback_url,
            dedupe=self.dedupe,
            accepted_at=self.accepted_at,
        )


def call_key(seq: int) -> str:
    return f"call.{seq}"


def cron_key(function: str, schedule: str) -> str:
    return "cron." + hashlib.sha256(f"{function}\n{schedule}".encode()).hexdigest()[:40]


def dedupe_seq(dedupe: str) -> int:
    """The key of a call with a dedupe key: the same key always, so JetStream accepts it once."""
    return int.from_bytes(hashlib.sha256(dedupe.encode()).digest()[:8], "big") & _SEQ_MASK


def new_seq() -> int:
    """A fresh key, ordered by time (microseconds) with 8 random bits: oldest first among equal due times."""
    return ((time.time_ns() // 1000) << 8 | secrets.randbits(8)) & _SEQ_MASK


def _leased_until(until: float) -> Callable[[Record], Record]:
    return lambda record: dataclasses.replace(record, lease_until=until)


class _Lost(Exception):
    """The record is no longer what this change expected (another gateway changed it)."""


class JetStreamCallQueue:
    """:class:`~gateway.async_calls.CallQueue` on a NATS JetStream KV bucket; connects with the first operation."""

    def __init__(
        self,
        url: str,
        *,
        bucket: str = BUCKET,
        lease_s: float = LEASE_S,
        replicas: int = 1,
        clock: Callable[[], float] = time.time,
        on_work: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.bucket = bucket
        self.owner = secrets.token_hex(8)
        self._lease_s = lease_s
        self._replicas = replicas
        self._clock = clock
        self._on_work = on_work
        self._nc: Client | None = None
        self._kv: KeyValue | None = None
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._records: dict[int, tuple[int, Record]] = {}  # seq → (revision, record)
        self._gone: dict[int, int] = {}  # seq → revision of its delete (a late older put must not revive it)
        self._active: set[int] = set()  # seqs with an invocation or a callback left to do
        self._by_call_id: dict[str, set[int]] = {}
        self._held: set[int] = set()  # claims this queue holds: their leases are renewed
        self._watching: asyncio.Task[None] | None = None

    # -- plumbing

    async def _bucket(self) -> KeyValue:
        if self._closed:
            raise QueueClosedError("the async queue is closed")
        if self._kv is not None:
            return self._kv
        async with self._start_lock:
            return self._kv or await self._start()

    async def _start(self) -> KeyValue:
        try:
            # Each server tried twice at most for the first connection (an operation waiting for it fails in
            # seconds, and the next one tries again); once connected, reconnect for ever.
            nc = await nats.connect(
                self.url.split(","),
                connect_timeout=CONNECT_TIMEOUT_S,
                max_reconnect_attempts=1,
                reconnect_time_wait=RECONNECT_WAIT_S,
                allow_reconnect=True,
                name="pyfaasd-gateway",
                error_cb=self._nats_error,
                disconnected_cb=self._nats_disconnected,
                reconnected_cb=self._nats_reconnected,
            )
            nc.options["max_reconnect_attempts"] = -1
        except Exception as exc:
            raise JetStreamUnavailableError(f"cannot connect to NATS at {self.url}: {exc!r}") from exc
        try:
            js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
            try:
                kv = await js.key_value(self.bucket)
            except BucketNotFoundError:
                config = KeyValueConfig(
                    bucket=self.bucket, history=1, storage=StorageType.FILE, replicas=self._replicas
                )
                try:
                    kv = await js.create_key_value(config)
                except Exception:  # another gateway made it at the same moment
                    kv = await js.key_value(self.bucket)
            watcher = await kv.watchall()
            while (entry := await watcher.updates(timeout=REQUEST_TIMEOUT_S)) is not None:  # type: ignore[no-untyped-call]
                self._apply_entry(entry, ring=False)
        except Exception as exc:
            await nc.close()
            raise JetStreamUnavailableError(f"the JetStream bucket {self.bucket} is unusable: {exc!r}") from exc
        self._nc = nc
        self._kv = kv
        self._watching = asyncio.create_task(self._follow(watcher), name="async-queue-watch")
        self._tasks = [self._watching, asyncio.create_task(self._renew_leases(), name="async-queue-leases")]
        log.info("async_queue_jetstream", url=self.url, bucket=self.bucket, calls=len(self._records))
        return kv

    async def _nats_error(self, error: Exception) -> None:
        log.warning("async_queue_nats_error", url=self.url, error=repr(error))

    async def _nats_disconnected(self) -> None:
        if not self._closed:
            log.warning("async_queue_nats_disconnected", url=self.url)

    async def _nats_reconnected(self) -> None:
        log.info("async_queue_nats_reconnected", url=self.url)
        if self._kv is not None and not self._closed:
            # A restarted server has lost the watcher's consumer: watch again (the mirror keeps what it has and
            # takes every newer revision, deletes included).
            self._tasks.append(asyncio.create_task(self._watch_again(self._kv), name="async-queue-rewatch"))

    async def _watch_again(self, kv: KeyValue) -> None:
        try:
            watcher = await kv.watchall()
        except Exception as exc:  # the next reconnection tries again; the dispatcher's writes still go through
            log.warning("async_queue_watch_failed", url=self.url, error=repr(exc))
            return
        if self._closed:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
            return
        previous = self._watching
        self._watching = asyncio.create_task(self._follow(watcher), name="async-queue-watch")
        self._tasks = [task for task in self._tasks if not task.done()] + [self._watching]
        if previous is not None:
            previous.cancel()

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is not None:
                    self._apply_entry(entry, ring=True)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _apply_entry(self, entry: KeyValue.Entry, *, ring: bool) -> None:
        if not entry.key.startswith("call.") or entry.revision is None:
            return
        seq = int(entry.key[5:])
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self._forget(seq, entry.revision)
            return
        record = Record.decode(entry.value)
        if self._apply(record, entry.revision) and ring and record.state is CallState.QUEUED and self._on_work:
            self._on_work()

    def _apply(self, record: Record, revision: int) -> bool:
        """Put a record in the mirror unless the mirror has a newer revision of it; whether it did."""
        seq = record.seq
        known = self._records.get(seq)
        if (known is not None and known[0] >= revision) or self._gone.get(seq, 0) >= revision:
            return False
        self._records[seq] = (revision, record)
        self._by_call_id.setdefault(record.call_id, set()).add(seq)
        if record.active:
            self._active.add(seq)
        else:
            self._active.discard(seq)
        return True

    def _forget(self, seq: int, revision: int) -> None:
        known = self._records.get(seq)
        if known is not None and known[0] >= revision:
            return
        self._gone[seq] = revision
        if len(self._gone) > GONE_KEPT:  # the oldest tombstones: the watcher is long past them
            for old in list(self._gone)[: GONE_KEPT // 2]:
                del self._gone[old]
        if known is not None:
            del self._records[seq]
            ids = self._by_call_id.get(known[1].call_id)
            if ids is not None:
                ids.discard(seq)
                if not ids:
                    del self._by_call_id[known[1].call_id]
        self._active.discard(seq)
        self._held.discard(seq)

    async def _write(self, record: Record, last: int) -> bool:
        """Compare-and-set ``record`` over revision ``last`` (0: create); False when the revision was not the last."""
        kv = await self._bucket()
        try:
            if last:
                revision = await kv.update(call_key(record.seq), record.encode(), last=last)
            else:
                revision = await kv.create(call_key(record.seq), record.encode())
        except KeyWrongLastSequenceError:
            return False
        self._apply(record, revision)
        return True

    async def _fresh(self, seq: int) -> tuple[int, Record] | None:
        """The record as the server has it now (the mirror may lag behind another gateway's write)."""
        kv = await self._bucket()
        try:
            entry = await kv.get(call_key(seq))
        except KeyNotFoundError:  # includes a deleted key
            return None
        if entry.value is None or entry.revision is None:
            return None
        record = Record.decode(entry.value)
        self._apply(record, entry.revision)
        return entry.revision, record

    async def _change(self, seq: int, change: Callable[[Record], Record]) -> None:
        """Apply ``change`` to a claim this queue holds, by compare-and-set; ``_Lost`` when it is not held."""
        known = self._records.get(seq)
        for _ in range(5):
            if known is None:
                raise _Lost(seq)
            revision, record = known
            if record.owner != self.owner:
                raise _Lost(seq)
            if await self._write(change(record), revision):
                return
            known = await self._fresh(seq)
        raise _Lost(seq)

    async def _holder_change(self, seq: int, change: Callable[[Record], Record], what: str) -> None:
        self._held.discard(seq)  # no renewal from now on: the change ends the claim
        try:
            await self._change(seq, change)
        except _Lost:
            log.warning("async_claim_lost", seq=seq, change=what, owner=self.owner)

    def _expired(self, record: Record, now: float) -> bool:
        return record.owner is not None and record.lease_until <= now

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            for seq in list(self._held):
                if seq not in self._held:
                    continue  # its outcome was recorded meanwhile
                until = self._clock() + self._lease_s
                try:
                    await self._change(seq, _leased_until(until))
                except _Lost:
                    if seq in self._held:
                        self._held.discard(seq)
                        log.warning("async_claim_lost", seq=seq, change="lease", owner=self.owner)
                except Exception as exc:  # the server is away: try again at the next round
                    log.warning("async_lease_renewal_failed", seq=seq, error=repr(exc))

    async def close(self) -> None:
        self._closed = True
        tasks = [*self._tasks, *([self._watching] if self._watching is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        nc, self._nc, self._kv = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.drain()

    # -- CallQueue

    async def enqueue(self, call: AsyncCall) -> bool:
        accepted = call.accepted_at or self._clock()
        record = Record(
            seq=0,
            call_id=call.call_id,
            function=call.function,
            requested_name=call.requested_name,
            method=call.method,
            target=call.target,
            headers=call.headers,
            body=call.body,
            callback_url=call.callback_url,
            dedupe=call.dedupe,
            state=CallState.QUEUED,
            attempts=0,
            due_at=accepted,
            accepted_at=accepted,
        )
        if call.dedupe is not None:
            return await self._write(dataclasses.replace(record, seq=dedupe_seq(call.dedupe)), 0)
        while not await self._write(dataclasses.replace(record, seq=new_seq()), 0):
            pass  # the same microsecond and random bits as another call: another key
        return True

    async def recover(self) -> int:
        await self._bucket()
        now = self._clock()
        released = 0
        for seq in list(self._active):
            known = self._records.get(seq)
            if known is None:  # purged meanwhile
                continue
            revision, record = known
            if not self._expired(record, now):
                continue
            if record.state is CallState.RUNNING:
                record = dataclasses.replace(record, state=CallState.QUEUED, owner=None, lease_until=0.0)
            elif record.callback_state is CallbackState.RUNNING:
                record = dataclasses.replace(record, callback_state=CallbackState.PENDING, owner=None, lease_until=0.0)
            else:
                continue
            released += await self._write(record, revision)
        return released

    async def ready(self) -> ReadyWork:
        await self._bucket()
        calls: dict[str, float] = {}
        callbacks: dict[str, float] = {}
        for seq in self._active:
            record = self._records[seq][1]
            if record.state is CallState.QUEUED:
                due, into = record.due_at, calls
            elif record.state is CallState.RUNNING and record.owner != self.owner:
                due, into = record.lease_until, calls
            elif record.callback_state is CallbackState.PENDING:
                due, into = record.callback_due_at or 0.0, callbacks
            elif record.callback_state is CallbackState.RUNNING and record.owner != self.owner:
                due, into = record.lease_until, callbacks
            else:
                continue
            into[record.function] = min(due, into.get(record.function, due))
        return ReadyWork(calls, callbacks)

    def _claimable(self, function: str, limit: int, now: float, *, callbacks: bool) -> list[tuple[int, Record]]:
        wall = self._clock()
        found = []
        for seq in self._active:
            revision, record = self._records[seq]
            if record.function != function:
                continue
            if callbacks:
                if record.callback_state is CallbackState.PENDING and (record.callback_due_at or 0.0) <= now:
                    found.append((record.callback_due_at or 0.0, seq, revision, record))
                elif record.callback_state is CallbackState.RUNNING and self._expired(record, wall):
                    found.append((record.lease_until, seq, revision, record))
            elif record.state is CallState.QUEUED and record.due_at <= now:
                found.append((record.due_at, seq, revision, record))
            elif record.state is CallState.RUNNING and self._expired(record, wall):
                found.append((record.lease_until, seq, revision, record))
        found.sort(key=lambda item: (item[0], item[1]))
        return [(revision, record) for _, _, revision, record in found[: limit * 2]]

    async def claim(self, limits: Mapping[str, int], now: float) -> list[ClaimedCall]:
        taken = await self._take(limits, now, callbacks=False)
        return [ClaimedCall(record.seq, record.call(), changed.attempts) for record, changed in taken]

    async def complete(self, seq: int, outcome: Outcome, *, succeeded: bool, callback: bool) -> None:
        now = self._clock()

        def done(record: Record) -> Record:
            return dataclasses.replace(
                record,
                state=CallState.DONE if succeeded else CallState.FAILED,
                function_status=outcome.status,
                duration_s=outcome.duration_s,
                body=None,
                response_headers=outcome.headers if callback else None,
                response_body=outcome.body if callback else None,
                callback_state=CallbackState.PENDING if callback else None,
                callback_due_at=now if callback else None,
                finished_at=None if callback else now,
                owner=None,
                lease_until=0.0,
            )

        await self._holder_change(seq, done, "complete")

    async def retry_at(self, seq: int, due: float, outcome: Outcome) -> None:
        def again(record: Record) -> Record:
            return dataclasses.replace(
                record,
                state=CallState.QUEUED,
                due_at=due,
                function_status=outcome.status,
                duration_s=outcome.duration_s,
                owner=None,
                lease_until=0.0,
            )

        await self._holder_change(seq, again, "retry")

    async def claim_callbacks(self, limits: Mapping[str, int], now: float) -> list[PendingCallback]:
        taken = await self._take(limits, now, callbacks=True)
        return [
            PendingCallback(
                record.seq,
                record.call_id,
                record.function,
                record.requested_name,
                record.callback_url or "",
                Outcome(
                    record.function_status or 0,
                    record.response_headers or (),
                    record.response_body or b"",
                    record.duration_s or 0.0,
                ),
                changed.callback_attempts,
            )
            for record, changed in taken
        ]

    def _running(self, record: Record, *, callback: bool) -> Record:
        """``record`` taken by this gateway for a lease: its call running, or its callback when ``callback``, one
        attempt more."""
        lease_until = self._clock() + self._lease_s
        if callback:
            return dataclasses.replace(
                record,
                callback_state=CallbackState.RUNNING,
                callback_attempts=record.callback_attempts + 1,
                owner=self.owner,
                lease_until=lease_until,
            )
        return dataclasses.replace(
            record, state=CallState.RUNNING, attempts=record.attempts + 1, owner=self.owner, lease_until=lease_until
        )

    async def _take(self, limits: Mapping[str, int], now: float, *, callbacks: bool) -> list[tuple[Record, Record]]:
        """Up to each function's limit of its claimable calls (or callbacks), each marked running (:meth:`_running`)
        with a compare-and-set, so no other gateway takes it too: the records taken, as they were and as written."""
        await self._bucket()
        taken: list[tuple[Record, Record]] = []
        for function, limit in limits.items():
            count = 0
            for revision, record in self._claimable(function, limit, now, callbacks=callbacks):
                if count >= limit:
                    break
                changed = self._running(record, callback=callbacks)
                if await self._write(changed, revision):  # False: another gateway claimed it first
                    self._held.add(record.seq)
                    taken.append((record, changed))
                    count += 1
        return taken

    async def callback_done(self, seq: int, *, delivered: bool) -> None:
        now = self._clock()

        def done(record: Record) -> Record:
            return dataclasses.replace(
                record,
                callback_state=CallbackState.DELIVERED if delivered else CallbackState.FAILED,
                response_headers=None,
                response_body=None,
                finished_at=now,
                owner=None,
                lease_until=0.0,
            )

        await self._holder_change(seq, done, "callback_done")

    async def callback_retry_at(self, seq: int, due: float) -> None:
        def again(record: Record) -> Record:
            return dataclasses.replace(
                record, callback_state=CallbackState.PENDING, callback_due_at=due, owner=None, lease_until=0.0
            )

        await self._holder_change(seq, again, "callback_retry")

    async def status(self, call_id: str) -> CallStatus | None:
        await self._bucket()
        seqs = self._by_call_id.get(call_id)
        if not seqs:
            return None
        record = self._records[max(seqs, key=lambda s: (self._records[s][1].accepted_at, s))][1]
        return CallStatus(record.state, record.attempts, record.function_status)

    async def counts(self) -> QueueCounts:
        await self._bucket()
        queued: dict[str, int] = {}
        pending: dict[str, int] = {}
        for seq in self._active:
            record = self._records[seq][1]
            if record.state is CallState.QUEUED:
                queued[record.function] = queued.get(record.function, 0) + 1
            if record.callback_state is CallbackState.PENDING:
                pending[record.function] = pending.get(record.function, 0) + 1
        return QueueCounts(queued, pending)

    async def purge(self, finished_before: float) -> int:
        kv = await self._bucket()
        purged = 0
        for seq, (revision, record) in list(self._records.items()):
            if record.finished_at is None or record.finished_at >= finished_before:
                continue
            try:
                await kv.delete(call_key(seq), last=revision)
            except KeyWrongLastSequenceError:
                continue  # changed meanwhile (or purged by another gateway)
            self._forget(seq, revision + 1)
            purged += 1
        return purged

    async def last_cron_slot(self, function: str, schedule: str) -> float | None:
        kv = await self._bucket()
        try:
            entry = await kv.get(cron_key(function, schedule))
        except KeyNotFoundError:
            return None
        return None if entry.value is None else float(entry.value)

    async def fire_cron(self, function: str, schedule: str, slot: float, call: AsyncCall | None) -> None:
        # The call first, then the slot: a crash between the two fires the slot again, and the call's dedupe key
        # makes that second call a no-op. Several gateways firing one slot make one call.
        if call is not None:
            await self.enqueue(call)
        kv = await self._bucket()
        key = cron_key(function, schedule)
        value = repr(slot).encode()
        while True:
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                try:
                    await kv.create(key, value)
                    return
                except KeyWrongLastSequenceError:
                    continue
            if entry.value is not None and float(entry.value) >= slot:
                return  # another gateway recorded this slot, or a later one
            try:
                await kv.update(key, value, last=entry.revision)
                return
            except KeyWrongLastSequenceError:
                continue
