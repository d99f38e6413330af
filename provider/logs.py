"""``GET /system/logs``: a function's container logs as NDJSON, all replicas merged in time order.

Query parameters as faas-provider's log handler: ``name``, ``namespace``, ``instance`` (a container name or ID
prefix), ``tail`` (lines; 0 or less means all), ``since`` (RFC 3339), ``follow`` (Go's ParseBool words). A
value that cannot be parsed is a 422.

Without ``follow`` the lines of every replica are read, merged by timestamp and cut to the last ``tail``.
With ``follow`` the same history comes first, then new lines of each replica as they are written (lines of
different replicas arriving at the same moment may interleave out of order by a few milliseconds).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from provider.errors import LogRequestError
from provider.models import DEFAULT_NAMESPACE, check_dns_label, format_time
from provider.runtime import Container, LogLine, Runtime

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False", ""})


@dataclass(frozen=True, slots=True)
class LogRequest:
    name: str
    namespace: str
    instance: str
    tail: int | None
    since: datetime | None
    follow: bool

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> LogRequest:
        name = query.get("name", "").strip()
        if not name:
            raise LogRequestError("could not parse the log request: name is required")
        tail: int | None = None
        if query.get("tail", "").strip():
            try:
                tail = int(query["tail"])
            except ValueError:
                raise LogRequestError(
                    f"could not parse the log request: tail {query['tail']!r} is not a number"
                ) from None
            if tail <= 0:
                tail = None
        since = None
        if query.get("since", "").strip():
            try:
                since = datetime.fromisoformat(query["since"].strip())
            except ValueError:
                raise LogRequestError(
                    f"could not parse the log request: since {query['since']!r} is not an RFC 3339 time"
                ) from None
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
        follow_text = query.get("follow", "")
        if follow_text not in _GO_TRUE | _GO_FALSE:
            raise LogRequestError(f"could not parse the log request: follow {follow_text!r} is not true or false")
        return cls(
            name=check_dns_label("name", name),
            namespace=check_dns_label("namespace", query.get("namespace", "").strip() or DEFAULT_NAMESPACE),
            instance=query.get("instance", "").strip(),
            tail=tail,
            since=since,
            follow=follow_text in _GO_TRUE,
        )


@dataclass(frozen=True, slots=True)
class LogMessage:
    name: str
    namespace: str
    instance: str
    line: LogLine

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "instance": self.instance,
            "timestamp": format_time(self.line.timestamp),
            "text": self.line.text,
        }


def select(containers: list[Container], instance: str) -> list[Container]:
    if not instance:
        return containers
    return [c for c in containers if c.name == instance or c.id.startswith(instance)]


async def read_logs(runtime: Runtime, request: LogRequest, containers: list[Container]) -> AsyncIterator[LogMessage]:
    histories = await asyncio.gather(*(_history(runtime, c, request.tail, request.since) for c in containers))
    merged = list(heapq.merge(*histories, key=lambda m: m.line.timestamp))
    if request.tail is not None:
        merged = merged[-request.tail :]
    for message in merged:
        yield message
    if not request.follow:
        return
    queue: asyncio.Queue[LogMessage | None] = asyncio.Queue(maxsize=1024)

    async def follow(container: Container, history: list[LogMessage]) -> None:
        last = history[-1].line.timestamp if history else None
        since = (last + timedelta(microseconds=1)) if last else request.since
        try:
            async for line in runtime.logs(container.id, tail=None if since else 0, since=since, follow=True):
                if last is None or line.timestamp > last:
                    await queue.put(LogMessage(request.name, request.namespace, container.name, line))
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(follow(c, h)) for c, h in zip(containers, histories, strict=True)]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
                continue
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _history(
    runtime: Runtime, container: Container, tail: int | None, since: datetime | None
) -> list[LogMessage]:
    namespace, name = container.key
    return [
        LogMessage(name, namespace, container.name, line)
        async for line in runtime.logs(container.id, tail=tail, since=since, follow=False)
    ]
