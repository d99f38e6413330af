"""Recovery and Docker's events: rebuild the view from Docker on start, react to what happens to containers.

Replicas are restarted by the provider, not by a Docker restart policy, because every (re)start makes a new
network namespace that must be attached to the bridge again. Docker's event stream tells the provider when
a container died, was started by someone else (``docker restart``), was OOM-killed or removed.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import structlog

from provider.errors import ProviderError
from provider.models import FunctionDeployment
from provider.replicas import Replicas
from provider.runtime import Container, ContainerEvent, Runtime
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
        scale_store: ScaleStore,
        background: Background,
        timings: Timings,
    ) -> None:
        self._state = state
        self._replicas = replicas
        self._runtime = runtime
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
        await self._replicas.free_addresses_except(cid for fn in functions.values() for cid in fn.replicas)
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
        """Attach the running replicas, then start or stop replicas until the desired count run.

        A paused replica (a function at zero when the provider stopped) is kept paused for a new pause window,
        or thawed if the function wants replicas again.

        A replica that cannot be attached is replaced (if it still runs) or started again (if it exited
        meanwhile): one bad replica never keeps the others, or the provider, from serving.
        """
        async with fn.lock:
            try:
                for replica in fn.by_index():
                    if replica.container.running:
                        await self._adopt_or_drop(fn, replica)
                    elif replica.container.paused and fn.desired == 0:
                        await self._replicas.keep_paused(fn, replica)
                ordered = fn.by_index()
                active = [r for r in ordered if r.container.running]
                if len(active) < fn.desired:
                    await self._replicas.grow(fn, fn.desired, ordered)
                elif len(active) > fn.desired:
                    await self._replicas.shrink(fn, fn.desired)
            except ProviderError as e:
                log.error(
                    "function_recovery_failed", function=fn.spec.service, namespace=fn.spec.namespace, error=str(e)
                )

    async def _adopt_or_drop(self, fn: FunctionState, replica: ReplicaState) -> bool:
        """Adopt a running replica; if that fails, remove it when it still runs. Whether it was adopted."""
        try:
            await self._replicas.adopt(fn, replica)
        except ProviderError as e:
            running = replica.container.running
            log.error(
                "replica_adopt_failed",
                function=fn.spec.service,
                namespace=fn.spec.namespace,
                container=replica.container.name,
                error=str(e),
                action="replace" if running else "restart",
            )
            if running:
                fn.replicas.pop(replica.container.id, None)
                await self._replicas.remove([replica.container], grace=False)
            return False
        return True

    # -- events ------------------------------------------------------------------------------------------

    def handle(self, event: ContainerEvent) -> None:
        """React to one event; the reactions run as background tasks, each under its function's lock."""
        if not event.function:  # an idle pool container or the pip installer: no replica of anything
            return
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
            if not self._current(fn, replica) or self._state.is_managed(replica.container.id) or replica.restarting:
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
                if not self._current(fn, replica) or fn.desired == 0 or replica.ready:
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

    def _current(self, fn: FunctionState, replica: ReplicaState) -> bool:
        """Whether the function is still deployed and ``replica`` still one of its (not deleted or replaced)."""
        return self._state.find(fn.key) is fn and fn.holds(replica)

    def _next_delay(self, replica: ReplicaState) -> float:
        delay = backoff(self._timings.restart_backoff_s, replica.restarts)
        replica.restarts += 1
        return delay

    async def _on_started(self, fn: FunctionState, replica: ReplicaState) -> None:
        async with fn.lock:
            if not self._current(fn, replica) or self._state.is_managed(replica.container.id):
                return
            info = await self._runtime.inspect(replica.container.id)
            if info is None or not info.running:
                return
            replica.container = info
            replica.ready = False
            self._replicas.publish()
            if await self._adopt_or_drop(fn, replica):
                log.info("replica_reattached", function=fn.spec.service, container=info.name, ip=str(replica.ip))
            elif not fn.holds(replica):
                await self._replace(fn, replica)
            self._replicas.publish()

    async def _on_destroyed(self, fn: FunctionState, replica: ReplicaState) -> None:
        async with fn.lock:
            if not self._current(fn, replica):
                return
            log.warning("replica_removed_outside", function=fn.spec.service, container=replica.container.name)
            fn.replicas.pop(replica.container.id, None)
            self._replicas.publish()
            await self._replicas.remove([replica.container], grace=False)  # frees its address
            await self._replace(fn, replica)
            self._replicas.publish()

    async def _replace(self, fn: FunctionState, gone: ReplicaState) -> None:
        """A new replica in place of one that was removed (a parked container if the function is at zero)."""
        try:
            if fn.desired > 0:
                used = {r.container.replica for r in fn.replicas.values()}
                free = next(i for i in range(len(used) + 1) if i not in used)
                for new in await self._replicas.create(fn, [free]):
                    fn.replicas[new.container.id] = new
            elif not fn.replicas:
                parked = await self._replicas.create_parked(fn)
                fn.replicas[parked.container.id] = parked
        except ProviderError as e:
            log.error("replica_replace_failed", function=fn.spec.service, container=gone.container.name, error=str(e))


class EventFollower:
    """Feeds Docker's container events to the reactions for as long as the provider runs.

    Nothing ends it but cancellation: when the stream ends (dockerd restarted) or anything fails, it logs why,
    waits (longer after each failure in a row), looks at every replica again (``resync``: events were missed)
    and subscribes again. While it is not following, ``problem()`` says why, and ``/healthz`` answers 503.
    """

    def __init__(self, runtime: Runtime, reactions: Reactions, timings: Timings) -> None:
        self._runtime = runtime
        self._reactions = reactions
        self._timings = timings
        self._problem: str | None = None

    def problem(self) -> str | None:
        """Why Docker's events are not being followed right now; None while they are."""
        return self._problem

    async def run(self) -> None:
        failures = 0
        while True:
            since = time.monotonic()
            self._problem = None
            try:
                async for event in self._runtime.events():
                    self._reactions.handle(event)
                problem = "Docker's event stream ended"
                log.warning("docker_events_lost", error=problem)
            except (aiohttp.ClientError, OSError, ProviderError) as e:
                problem = f"Docker's event stream broke: {e}"
                log.warning("docker_events_lost", error=str(e))
            except Exception as e:
                problem = f"following Docker's events failed: {type(e).__name__}: {e}"
                log.exception("docker_events_failed", error=f"{type(e).__name__}: {e}")
            if time.monotonic() - since > self._timings.stable_after_s:
                failures = 0
            delay = backoff(self._timings.events_retry_s, failures)
            failures += 1
            self._problem = f"{problem}; following them again in {delay:g}s"
            await asyncio.sleep(delay)
            try:
                await self._reactions.resync()
            except Exception as e:
                log.exception("docker_resync_failed", error=f"{type(e).__name__}: {e}")
