"""The async queue on one host: a SQLite database in the state dir (``<state>/async/queue.db``), WAL mode.

Durability: ``journal_mode=WAL``. A transaction that accepts a call (:meth:`SqliteCallQueue.enqueue`, a cron
firing) commits with ``synchronous=FULL``: the WAL is fsynced before the caller gets its 202, so the call
survives a kill -9 of any process and a power cut. The dispatcher's bookkeeping after that (claims, outcomes,
retries, callback states) commits with ``synchronous=NORMAL``: in WAL mode a commit is then in the OS's page
cache, which survives any process crash, and is fsynced with the next FULL commit or checkpoint. A power cut can
therefore roll bookkeeping back to an earlier state of the same call, never lose the call: at worst it runs
again, which at-least-once allows. (The WAL is sequential, so a FULL commit makes every commit before it durable
too.) This saves the dispatcher four fsyncs per call.

The fsync is shared: every operation goes through one writer thread per process that takes all the operations
waiting for it and runs them in one transaction (group commit; each in a savepoint of its own, so one failing
operation does not undo the others). The event loop never waits on SQLite: it waits on a future the thread
settles.

Several gateway workers each have their own writer thread and connection; SQLite serialises their
transactions (``busy_timeout``), and the WAL lets them read while another writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import structlog

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

T = TypeVar("T")

BATCH_MAX: Final = 512  # operations in one transaction at most
BUSY_TIMEOUT_S: Final = 10.0

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    function TEXT NOT NULL,
    requested_name TEXT NOT NULL,
    method TEXT NOT NULL,
    target TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB,
    callback_url TEXT,
    dedupe TEXT UNIQUE,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at REAL NOT NULL,
    accepted_at REAL NOT NULL,
    started_at REAL,
    function_status INTEGER,
    response_headers TEXT,
    response_body BLOB,
    duration_s REAL,
    callback_state TEXT,
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    callback_due_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS calls_queued ON calls (function, due_at) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS calls_callbacks ON calls (function, callback_due_at) WHERE callback_state = 'pending';
CREATE INDEX IF NOT EXISTS calls_by_id ON calls (call_id);
CREATE INDEX IF NOT EXISTS calls_finished ON calls (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS cron_slots (
    function TEXT NOT NULL,
    schedule TEXT NOT NULL,
    last_slot REAL NOT NULL,
    PRIMARY KEY (function, schedule)
);
"""


class QueueClosedError(RuntimeError):
    """The queue was closed while an operation waited for it."""


def open_database(path: Path) -> sqlite3.Connection:
    """The queue's database, made if absent (its directory 0700), in WAL mode with fsync on every commit."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(SCHEMA)
    return connection


def _headers_json(headers: Headers) -> str:
    return json.dumps([list(pair) for pair in headers], separators=(",", ":"))


def _headers_from(text: str | None) -> Headers:
    return tuple((str(name), str(value)) for name, value in json.loads(text or "[]"))


# -- the operations, each run by the writer thread inside a transaction ------------------------------------


def insert_call(db: sqlite3.Connection, call: AsyncCall, now: float) -> bool:
    accepted = call.accepted_at or now
    cursor = db.execute(
        "INSERT INTO calls (call_id, function, requested_name, method, target, headers, body, callback_url, dedupe,"
        " state, due_at, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)"
        " ON CONFLICT (dedupe) DO NOTHING",
        (
            call.call_id,
            call.function,
            call.requested_name,
            call.method,
            call.target,
            _headers_json(call.headers),
            call.body,
            call.callback_url,
            call.dedupe,
            accepted,
            accepted,
        ),
    )
    return cursor.rowcount == 1


def recover(db: sqlite3.Connection) -> int:
    calls = db.execute("UPDATE calls SET state = 'queued' WHERE state = 'running'").rowcount
    callbacks = db.execute("UPDATE calls SET callback_state = 'pending' WHERE callback_state = 'running'").rowcount
    return calls + callbacks


# The partial indexes' conditions, written literally: SQLite uses a partial index only for a query whose WHERE
# names its condition as written, not through a bound parameter.
_QUEUED: Final = "state = 'queued'"
_CALLBACK_PENDING: Final = "callback_state = 'pending'"


def _earliest(db: sqlite3.Connection, condition: str, due_column: str) -> dict[str, float]:
    """function -> its earliest due time, in O(functions * log rows): a skip-scan of the partial index, so a deep
    queue costs the dispatcher no more than a shallow one."""
    found: dict[str, float] = {}
    function = db.execute(f"SELECT MIN(function) FROM calls WHERE {condition}").fetchone()[0]  # noqa: S608
    while function is not None:
        due = db.execute(
            f"SELECT MIN({due_column}) FROM calls WHERE {condition} AND function = ?",  # noqa: S608
            (function,),
        ).fetchone()[0]
        found[str(function)] = float(due)
        function = db.execute(
            f"SELECT MIN(function) FROM calls WHERE {condition} AND function > ?",  # noqa: S608
            (function,),
        ).fetchone()[0]
    return found


def ready(db: sqlite3.Connection) -> ReadyWork:
    return ReadyWork(_earliest(db, _QUEUED, "due_at"), _earliest(db, _CALLBACK_PENDING, "callback_due_at"))


def claim(db: sqlite3.Connection, limits: Mapping[str, int], now: float) -> list[ClaimedCall]:
    claimed = []
    for function, limit in limits.items():
        if limit > 0:
            claimed += _claim(db, function, limit, now)
    return claimed


def _claim(db: sqlite3.Connection, function: str, limit: int, now: float) -> list[ClaimedCall]:
    rows = db.execute(
        "SELECT seq, call_id, requested_name, method, target, headers, body, callback_url, dedupe, attempts,"
        " accepted_at FROM calls WHERE state = 'queued' AND function = ? AND due_at <= ?"
        " ORDER BY due_at, seq LIMIT ?",
        (function, now, limit),
    ).fetchall()
    claimed = []
    for seq, call_id, requested, method, target, headers, body, callback_url, dedupe, attempts, accepted in rows:
        db.execute(
            "UPDATE calls SET state = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, ?)"
            " WHERE seq = ?",
            (now, seq),
        )
        call = AsyncCall(
            call_id=call_id,
            function=function,
            requested_name=requested,
            method=method,
            target=target,
            headers=_headers_from(headers),
            body=bytes(body or b""),
            callback_url=callback_url,
            dedupe=dedupe,
            accepted_at=accepted,
        )
        claimed.append(ClaimedCall(seq, call, attempts + 1))
    return claimed


def complete(db: sqlite3.Connection, seq: int, outcome: Outcome, succeeded: bool, callback: bool, now: float) -> None:
    db.execute(
        "UPDATE calls SET state = ?, function_status = ?, duration_s = ?, body = NULL, response_headers = ?,"
        " response_body = ?, callback_state = ?, callback_due_at = ?, finished_at = ? WHERE seq = ?",
        (
            CallState.DONE if succeeded else CallState.FAILED,
            outcome.status,
            outcome.duration_s,
            _headers_json(outcome.headers) if callback else None,
            outcome.body if callback else None,
            CallbackState.PENDING if callback else None,
            now if callback else None,
            None if callback else now,
            seq,
        ),
    )


def retry_at(db: sqlite3.Connection, seq: int, due: float, outcome: Outcome) -> None:
    db.execute(
        "UPDATE calls SET state = 'queued', due_at = ?, function_status = ?, duration_s = ? WHERE seq = ?",
        (due, outcome.status, outcome.duration_s, seq),
    )


def claim_callbacks(db: sqlite3.Connection, limits: Mapping[str, int], now: float) -> list[PendingCallback]:
    claimed = []
    for function, limit in limits.items():
        if limit > 0:
            claimed += _claim_callbacks(db, function, limit, now)
    return claimed


def _claim_callbacks(db: sqlite3.Connection, function: str, limit: int, now: float) -> list[PendingCallback]:
    rows = db.execute(
        "SELECT seq, call_id, requested_name, callback_url, function_status, response_headers, response_body,"
        " duration_s, callback_attempts FROM calls WHERE callback_state = 'pending' AND function = ?"
        " AND callback_due_at <= ? ORDER BY callback_due_at, seq LIMIT ?",
        (function, now, limit),
    ).fetchall()
    claimed = []
    for seq, call_id, requested, url, status, headers, body, duration, attempts in rows:
        db.execute(
            "UPDATE calls SET callback_state = 'running', callback_attempts = callback_attempts + 1 WHERE seq = ?",
            (seq,),
        )
        outcome = Outcome(int(status), _headers_from(headers), bytes(body or b""), float(duration or 0.0))
        claimed.append(PendingCallback(seq, call_id, function, requested, url, outcome, attempts + 1))
    return claimed


def callback_done(db: sqlite3.Connection, seq: int, delivered: bool, now: float) -> None:
    db.execute(
        "UPDATE calls SET callback_state = ?, response_headers = NULL, response_body = NULL, finished_at = ?"
        " WHERE seq = ?",
        (CallbackState.DELIVERED if delivered else CallbackState.FAILED, now, seq),
    )


def callback_retry_at(db: sqlite3.Connection, seq: int, due: float) -> None:
    db.execute("UPDATE calls SET callback_state = 'pending', callback_due_at = ? WHERE seq = ?", (due, seq))


def status(db: sqlite3.Connection, call_id: str) -> CallStatus | None:
    row = db.execute(
        "SELECT state, attempts, function_status FROM calls WHERE call_id = ? ORDER BY seq DESC LIMIT 1", (call_id,)
    ).fetchone()
    if row is None:
        return None
    return CallStatus(CallState(row[0]), int(row[1]), None if row[2] is None else int(row[2]))


def counts(db: sqlite3.Connection) -> QueueCounts:
    queued = db.execute("SELECT function, COUNT(*) FROM calls WHERE state = 'queued' GROUP BY function")
    waiting = {str(f): int(n) for f, n in queued}
    pending = db.execute("SELECT function, COUNT(*) FROM calls WHERE callback_state = 'pending' GROUP BY function")
    return QueueCounts(waiting, {str(f): int(n) for f, n in pending})


def purge(db: sqlite3.Connection, before: float) -> int:
    return db.execute("DELETE FROM calls WHERE finished_at IS NOT NULL AND finished_at < ?", (before,)).rowcount


def last_cron_slot(db: sqlite3.Connection, function: str, schedule: str) -> float | None:
    row = db.execute(
        "SELECT last_slot FROM cron_slots WHERE function = ? AND schedule = ?", (function, schedule)
    ).fetchone()
    return None if row is None else float(row[0])


def fire_cron(
    db: sqlite3.Connection, function: str, schedule: str, slot: float, call: AsyncCall | None, now: float
) -> None:
    db.execute(
        "INSERT INTO cron_slots (function, schedule, last_slot) VALUES (?, ?, ?)"
        " ON CONFLICT (function, schedule) DO UPDATE SET last_slot = excluded.last_slot",
        (function, schedule, slot),
    )
    if call is not None:
        insert_call(db, call, now)


# -- the writer thread --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Op(Generic[T]):
    run: Callable[[sqlite3.Connection], T]
    writes: bool
    durable: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteCallQueue:
    """:class:`~gateway.async_calls.CallQueue` on SQLite; the writer thread starts with the first operation."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._ops: queue.SimpleQueue[_Op[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._durable = True  # the connection's synchronous setting: FULL (True) or NORMAL
        self.batches = 0  # transactions committed, for tests and the bench (group commit at work)

    # -- plumbing

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="async-queue-writer", daemon=True)
                self._thread.start()

    async def _submit(self, run: Callable[[sqlite3.Connection], T], *, writes: bool = True, durable: bool = False) -> T:
        if self._closed:
            raise QueueClosedError("the async queue is closed")
        if self._thread is None:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ops.put(_Op(run, writes, durable, loop, future))
        return await future

    def _serve(self) -> None:
        try:
            db = open_database(self.path)
        except sqlite3.Error as exc:
            log.error("async_queue_unusable", path=str(self.path), error=str(exc))
            self._fail_all(exc)
            return
        try:
            while True:
                first = self._ops.get()
                if first is None:
                    return
                batch: list[_Op[Any]] = [first]
                stop = False
                while len(batch) < BATCH_MAX:
                    try:
                        op = self._ops.get_nowait()
                    except queue.Empty:
                        break
                    if op is None:
                        stop = True
                        break
                    batch.append(op)
                self._run_batch(db, batch)
                if stop:
                    return
        finally:
            db.close()
            self._fail_all(QueueClosedError("the async queue is closed"))

    def _fail_all(self, error: BaseException) -> None:
        while True:
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                return
            if op is not None:
                self._deliver(op, None, error)

    @staticmethod
    def _deliver(op: _Op[Any], result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            op.loop.call_soon_threadsafe(_settle, op.future, result, error)

    def _run_batch(self, db: sqlite3.Connection, batch: list[_Op[Any]]) -> None:
        results: list[tuple[Any, BaseException | None]] = []
        durable = any(op.durable for op in batch)
        try:
            if durable != self._durable:
                db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
                self._durable = durable
            db.execute("BEGIN IMMEDIATE" if any(op.writes for op in batch) else "BEGIN")
            for op in batch:
                db.execute("SAVEPOINT op")
                try:
                    results.append((op.run(db), None))
                    db.execute("RELEASE op")
                except Exception as exc:  # one bad operation: undo it alone
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    results.append((None, exc))
            db.execute("COMMIT")
            self.batches += 1
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            log.error("async_queue_commit_failed", error=str(exc), operations=len(batch))
            results = [(None, exc)] * len(batch)
        for op, (result, error) in zip(batch, results, strict=True):
            self._deliver(op, result, error)

    async def close(self) -> None:
        self._closed = True
        self._ops.put(None)
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join)

    # -- CallQueue

    async def enqueue(self, call: AsyncCall) -> bool:
        now = self._clock()
        return await self._submit(lambda db: insert_call(db, call, now), durable=True)

    async def recover(self) -> int:
        return await self._submit(recover)

    async def ready(self) -> ReadyWork:
        return await self._submit(ready, writes=False)

    async def claim(self, limits: Mapping[str, int], now: float) -> list[ClaimedCall]:
        return await self._submit(lambda db: claim(db, dict(limits), now))

    async def complete(self, seq: int, outcome: Outcome, *, succeeded: bool, callback: bool) -> None:
        now = self._clock()
        await self._submit(lambda db: complete(db, seq, outcome, succeeded, callback, now))

    async def retry_at(self, seq: int, due: float, outcome: Outcome) -> None:
        await self._submit(lambda db: retry_at(db, seq, due, outcome))

    async def claim_callbacks(self, limits: Mapping[str, int], now: float) -> list[PendingCallback]:
        return await self._submit(lambda db: claim_callbacks(db, dict(limits), now))

    async def callback_done(self, seq: int, *, delivered: bool) -> None:
        now = self._clock()
        await self._submit(lambda db: callback_done(db, seq, delivered, now))

    async def callback_retry_at(self, seq: int, due: float) -> None:
        await self._submit(lambda db: callback_retry_at(db, seq, due))

    async def status(self, call_id: str) -> CallStatus | None:
        return await self._submit(lambda db: status(db, call_id), writes=False)

    async def counts(self) -> QueueCounts:
        return await self._submit(counts, writes=False)

    async def purge(self, finished_before: float) -> int:
        return await self._submit(lambda db: purge(db, finished_before))

    async def last_cron_slot(self, function: str, schedule: str) -> float | None:
        return await self._submit(lambda db: last_cron_slot(db, function, schedule), writes=False)

    async def fire_cron(self, function: str, schedule: str, slot: float, call: AsyncCall | None) -> None:
        now = self._clock()
        await self._submit(lambda db: fire_cron(db, function, schedule, slot, call, now), durable=True)
