"""The provider's view of its functions, shared by the API operations, the replica lifecycle and the event reactions.

Rebuilt from Docker labels on start and kept in memory. Each function has a lock that serialises the operations
on it; a container the provider is starting or stopping itself is "managed", so the events it causes are not
taken for something done from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address

from netconf import Replica
from provider.errors import FunctionNotFoundError
from provider.models import FunctionDeployment, FunctionStatus
from provider.runtime import Container

BRIDGE_CHECK_S = 1.0  # how often the bridge is checked for damage (one netlink dump)
RETIRE_GRACE_S = 1.0  # how long a replica keeps serving after it left the hosts file (the gateway polls it)
RESTART_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 30.0  # a replica up this long has its restart backoff reset
SLOW_READY_POLL_S = 0.5
DRAIN_POLL_S = 0.1  # how often a replica being removed is asked for its in-flight requests
# After an attach failed because the container's network namespace is gone: how long Docker may take to report
# the exit of its process (it learns of it asynchronously).
EXIT_REPORT_WAIT_S = 2.0
EVENTS_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # before following Docker's events again after the stream ended


@dataclass(frozen=True, slots=True)
class Timings:
    """The waits of the orchestration, in one place so that tests can shorten them."""

    retire_grace_s: float = RETIRE_GRACE_S
    drain_poll_s: float = DRAIN_POLL_S
    restart_backoff_s: tuple[float, ...] = RESTART_BACKOFF_S
    stable_after_s: float = STABLE_AFTER_S
    slow_ready_poll_s: float = SLOW_READY_POLL_S
    exit_report_wait_s: float = EXIT_REPORT_WAIT_S
    events_retry_s: tuple[float, ...] = EVENTS_RETRY_S
    bridge_check_s: float = BRIDGE_CHECK_S


def backoff(delays: tuple[float, ...], attempt: int) -> float:
    """The wait before retry number ``attempt`` (0-based): the last delay repeats."""
    return delays[min(attempt, len(delays) - 1)]


@dataclass(slots=True)
class ReplicaState:
    container: Container
    ip: IPv4Address | None = None
    ready: bool = False
    started_at: float = 0.0
    restarts: int = 0
    restarting: bool = False  # a restart after a crash is under way (waiting out its backoff, or retrying)
    paused_at: float = 0.0  # when it was last paused at zero (monotonic): which pause a pending stop belongs to


@dataclass(slots=True)
class FunctionState:
    spec: FunctionDeployment
    generation: str
    created_at: str
    desired: int
    replicas: dict[str, ReplicaState] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def key(self) -> tuple[str, str]:
        return (self.spec.namespace, self.spec.service)

    def status(self) -> FunctionStatus:
        return FunctionStatus(
            spec=self.spec,
            replicas=self.desired,
            available_replicas=sum(1 for r in self.replicas.values() if r.ready),
            created_at=datetime.fromisoformat(self.created_at) if self.created_at else datetime(1, 1, 1, tzinfo=UTC),
        )

    def by_index(self) -> list[ReplicaState]:
        return sorted(self.replicas.values(), key=lambda r: r.container.replica)

    def holds(self, replica: ReplicaState) -> bool:
        """Whether ``replica`` is still one of this function's (not replaced, removed or retired meanwhile)."""
        return self.replicas.get(replica.container.id) is replica


class State:
    def __init__(self) -> None:
        self.functions: dict[tuple[str, str], FunctionState] = {}
        self.deploying: set[tuple[str, str]] = set()  # deploys in flight, not yet in ``functions``
        self._operating: list[FunctionDeployment] = []  # deployments being deployed or rolled out now
        self._managed: set[str] = set()

    def find(self, key: tuple[str, str]) -> FunctionState | None:
        return self.functions.get(key)

    def get(self, namespace: str, name: str) -> FunctionState:
        fn = self.functions.get((namespace, name))
        if fn is None:
            raise FunctionNotFoundError(f"function {name}.{namespace} not found")
        return fn

    def has_functions(self, namespace: str) -> bool:
        return any(ns == namespace for ns, _ in self.functions)

    def ready_replicas(self) -> list[Replica]:
        """The hosts file's entries: every ready replica with an address."""
        return [
            Replica(name=fn.spec.service, namespace=fn.spec.namespace, ip=r.ip)
            for fn in self.functions.values()
            for r in fn.replicas.values()
            if r.ready and r.ip is not None
        ]

    @contextlib.contextmanager
    def operating(self, spec: FunctionDeployment) -> Iterator[None]:
        """While a deploy or update of ``spec`` runs, what it uses (code, volumes) counts as used."""
        self._operating.append(spec)
        try:
            yield
        finally:
            self._operating.remove(spec)

    def specs_in_use(self) -> list[FunctionDeployment]:
        """The deployments of every function, and of those being deployed or updated now."""
        return [*(fn.spec for fn in self.functions.values()), *self._operating]

    @contextlib.contextmanager
    def managing(self, container_id: str) -> Iterator[None]:
        """While inside, the events of this container are the provider's own doing."""
        self._managed.add(container_id)
        try:
            yield
        finally:
            self._managed.discard(container_id)

    def is_managed(self, container_id: str) -> bool:
        return container_id in self._managed
