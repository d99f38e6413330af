"""Recovery and Docker's events: rebuild the view from Docker on start, react to what happens to containers.

Replicas are restarted by the provider, not by a Docker restart policy, because every (re)start makes a new
network namespace that must be attached to the bridge again. Docker's event stream tells the provider when
a container died, was started by someone else (``docker restart``), was OOM-killed or removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import structlog

from provider.errors import ProviderError
from provider.models import FunctionDeployment
from provider.replicas import Replicas
from provider.runtime import Container, ContainerEvent, Network, Runtime
from provider.scale_store import ScaleStore
from provider.state import FunctionState, ReplicaState, State, Timings, backoff
from provider.tasks import Background

log = structlog.get_logger("provider")


class Reactions:
    def __init__(
        self,
        state: State,
        replicas: Replicas,
        runtime: Runtime,
        network: Network,
        scale_store: ScaleStore,
        background: Background,
        timings: Timings,
    ) -> None:
        self._state = state
        self._replicas = replicas
        self._runtime = runtime
        self._network = network
        self._scale_store = scale_store
        self._background = background
        self._timings = timings

    # -- recovery ----------------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Rebuild the view from Docker: adopt running replicas, start missing ones, drop stale ones."""
        containers = await self._runtime.list_functions()
        groups: dict[tuple[str, str], list[Container]] = {}
        for container in containers:
            groups.setdefault(container.key, []).append(container)
        stale: list[Container] = []
        functions = self._state.functions
        for key, group in groups.items():
            newest = max(group, key=lambda c: c.created)
            try:
                spec = FunctionDeployment.from_label(newest.spec)
            except (ProviderError, ValueError) as e:
                log.error("function_label_unreadable", container=newest.name, error=str(e))
                continue
            current: dict[int, Container] = {}
            for c in sorted(group, key=lambda c: c.created, reverse=True):
                if c.generation == newest.generation and c.replica not in current:
                    current[c.replica] = c
                else:
                    stale.append(c)
            desired = self._scale_store.get(*key)
            if desired is None:
                desired = len(current)
            functions[key] = FunctionState(
                spec=spec,
                generation=newest.generation,
                created_at=newest.created_label,
                desired=desired,
                replicas={c.id: ReplicaState(container=c) for c in current.values()},
            )
        if stale:
            await self._replicas.remove(stale, grace=False)
        await self._network.reconcile(cid for fn in functions.values() for cid in fn.replicas)
        await asyncio.gather(*(self._converge(fn) for fn in functions.values()))
        self._replicas.publish()
        log.info("provider_recovered", functions=len(functions), removed_stale=len(stale))

    async def resync(self) -> None:
        """After a gap in the event stream (dockerd restarted): look at every replica again and converge."""
        for fn in list(self._state.functions.values()):
            for replica in list(fn.replicas.values()):
                info = await self._runtime.inspect(replica.container.id)
                if info is None:
                    fn.replicas.pop(replica.container.id, None)
                    continue
                replica.container = info
                if not info.running:
                    replica.ready = False
        self._replicas.publish()
        await asyncio.gather(*(self._converge(fn) for fn in list(self._state.functions.values())))
        self._replicas.publish()

    async def _converge(self, fn: FunctionState) -> None:
        async with fn.lock:
            try:
                ordered = fn.by_index()
                for replica in ordered:
                    if replica.container.running:
                        await self._replicas.adopt(fn, replica)
                active = [r for r in ordered if r.container.running]
                if len(active) < fn.desired:
                    await self._replicas.grow(fn, fn.desired, ordered)
                elif len(active) > fn.desired:
                    await self._replicas.shrink(fn, fn.desired)
            except ProviderError as e:
                log.error(
                    "function_recovery_failed", function=fn.spec.service, namespace=fn.spec.namespace, error=str(e)
                )

    # -- events ------------------------------------------------------------------------------------------

    def handle(self, event: ContainerEvent) -> None:
        """React to one event; the reactions run as background tasks, each under its function's lock."""
        fn = self._state.find(event.key)
        if event.action == "oom":
            log.warning(
                "replica_oom_killed", function=event.function, namespace=event.namespace, container=event.id[:12]
            )
            return
        if fn is None or self._state.is_managed(event.id):
            return
        replica = fn.replicas.get(event.id)
        if replica is None:
            return
        if event.action == "die":
            self._background.spawn(self._on_died(fn, replica, event.exit_code), f"restart {replica.container.name}")
        elif event.action == "start":
            self._background.spawn(self._on_started(fn, replica), f"adopt {replica.container.name}")
        elif event.action == "destroy":
            self._background.spawn(self._on_destroyed(fn, replica), f"replace {replica.container.name}")

    async def _on_died(self, fn: FunctionState, replica: ReplicaState, exit_code: int | None) -> None:
        async with fn.lock:
            if not fn.holds(replica) or self._state.is_managed(replica.container.id) or replica.restarting:
                return
            replica.ready = False
            self._replicas.publish()
            info = await self._runtime.inspect(replica.container.id)
            if info is None:
                return
            replica.container = info
            if info.running:  # restarted already (docker restart): its start event re-attaches it
                return
            if info.oom_killed:
                log.warning("replica_oom_killed", function=fn.spec.service, container=info.name)
            if fn.desired == 0:
                return
            if time.monotonic() - replica.started_at > self._timings.stable_after_s:
                replica.restarts = 0
            delay = self._next_delay(replica)
            log.warning(
                "replica_died",
                function=fn.spec.service,
                namespace=fn.spec.namespace,
                container=info.name,
                exit_code=exit_code if exit_code is not None else info.exit_code,
                restart_in_s=delay,
            )
            replica.restarting = True
        try:
            await self._restart(fn, replica, delay)
        finally:
            replica.restarting = False

    async def _restart(self, fn: FunctionState, replica: ReplicaState, delay: float) -> None:
        """Bring a crashed replica up again after ``delay``, and again with longer delays until it serves."""
        while True:
            await asyncio.sleep(delay)
            async with fn.lock:
                if not fn.holds(replica) or fn.desired == 0 or replica.ready:
                    return
                try:
                    await self._replicas.bring_up(fn, replica)
                except ProviderError as e:
                    delay = self._next_delay(replica)
                    log.error(
                        "replica_restart_failed",
                        function=fn.spec.service,
                        container=replica.container.name,
                        error=str(e),
                        retry_in_s=delay,
                    )
                    continue
                self._replicas.publish()
                return

    def _next_delay(self, replica: ReplicaState) -> float:
        delay = backoff(self._timings.restart_backoff_s, replica.restarts)
        replica.restarts += 1
        return delay

    async def _on_started(self, fn: FunctionState, replica: ReplicaState) -> None:
        async with fn.lock:
            if not fn.holds(replica) or self._state.is_managed(replica.container.id):
                return
            info = await self._runtime.inspect(replica.container.id)
            if info is None or not info.running:
                return
            replica.container = info
            replica.ready = False
            self._replicas.publish()
            await self._replicas.adopt(fn, replica)
            self._replicas.publish()
            log.info("replica_reattached", function=fn.spec.service, container=info.name, ip=str(replica.ip))

    async def _on_destroyed(self, fn: FunctionState, replica: ReplicaState) -> None:
        async with fn.lock:
            if fn.replicas.pop(replica.container.id, None) is None:
                return
            self._replicas.publish()
            if replica.ip is not None:
                await self._network.detach(replica.ip)
            log.warning("replica_removed_outside", function=fn.spec.service, container=replica.container.name)
            if fn.desired > 0:
                used = {r.container.replica for r in fn.replicas.values()}
                free = next(i for i in range(len(used) + 1) if i not in used)
                try:
                    for new in await self._replicas.create(fn, [free]):
                        fn.replicas[new.container.id] = new
                except ProviderError as e:
                    log.error("replica_replace_failed", function=fn.spec.service, error=str(e))
            elif not fn.replicas:
                parked = await self._replicas.create_parked(fn)
                fn.replicas[parked.container.id] = parked
            self._replicas.publish()


async def follow_events(reactions: Reactions, runtime: Runtime) -> None:
    """Feed Docker's container events to the reactions, reconnecting if the stream ends."""
    while True:
        try:
            async for event in runtime.events():
                reactions.handle(event)
        except (aiohttp.ClientError, OSError, ProviderError) as e:
            log.warning("docker_events_lost", error=str(e))
        await asyncio.sleep(1.0)
        with contextlib.suppress(ProviderError):
            await reactions.resync()
