"""Functions and their replicas: deploy, rolling update, scale, delete, recovery and crash restarts.

The provider's view of the world is rebuilt from Docker labels on start (``recover``) and kept in memory;
each function has a lock that serialises the operations on it. A replica enters the hosts file only once
its watchdog answers ``/_/health`` with 200, and leaves it before its container is stopped.

Replicas are restarted by the provider, not by a Docker restart policy, because every (re)start makes a new
network namespace that must be attached to the bridge again. Docker's event stream tells the provider when
a container died, was started by someone else (``docker restart``), was OOM-killed or removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any

import aiohttp
import structlog

from netconf import Network, Replica, write_hosts
from provider.config import ProviderConfig, PullPolicy
from provider.container_spec import ReplicaSpec, container_config
from provider.docker_runtime import Container, ContainerEvent, DockerRuntime, parse_docker_time
from provider.errors import (
    FunctionExistsError,
    FunctionNotFoundError,
    FunctionStartError,
    ImageUnavailableError,
    NamespaceInvalidError,
    ProviderError,
    SecretMissingError,
)
from provider.models import FunctionDeployment, FunctionStatus, format_time
from provider.namespaces import NamespaceStore
from provider.readiness import NotReadyError, probe, wait_ready
from provider.scale_store import ScaleStore
from provider.secrets import SecretStore

log = structlog.get_logger("provider")

RETIRE_GRACE_S = 1.0  # how long a replica keeps serving after it left the hosts file (the gateway polls it)
RESTART_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 30.0  # a replica up this long has its restart backoff reset
SLOW_READY_POLL_S = 0.5


@dataclass(slots=True)
class ReplicaState:
    container: Container
    ip: IPv4Address | None = None
    ready: bool = False
    started_at: float = 0.0
    restarts: int = 0


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
            created_at=parse_docker_time(self.created_at) if self.created_at else datetime(1, 1, 1, tzinfo=UTC),
        )

    def by_index(self) -> list[ReplicaState]:
        return sorted(self.replicas.values(), key=lambda r: r.container.replica)


class Orchestrator:
    def __init__(
        self,
        config: ProviderConfig,
        runtime: DockerRuntime,
        network: Network,
        secrets: SecretStore,
        namespaces: NamespaceStore,
        scale_store: ScaleStore,
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._network = network
        self._secrets = secrets
        self._namespaces = namespaces
        self._scale_store = scale_store
        self._functions: dict[tuple[str, str], FunctionState] = {}
        self._deploying: set[tuple[str, str]] = set()
        self._managed: set[str] = set()  # containers being started or stopped by us: their events are ours
        self._tasks: set[asyncio.Task[None]] = set()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), cookie_jar=aiohttp.DummyCookieJar()
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    # -- queries ---------------------------------------------------------------------------------------

    def list_functions(self, namespace: str) -> list[FunctionStatus]:
        self._require_namespace(namespace)
        found = [fn.status() for (ns, _), fn in self._functions.items() if ns == namespace]
        return sorted(found, key=lambda s: s.spec.service)

    def get(self, namespace: str, name: str) -> FunctionState:
        fn = self._functions.get((namespace, name))
        if fn is None:
            raise FunctionNotFoundError(f"function {name}.{namespace} not found")
        return fn

    def has_functions(self, namespace: str) -> bool:
        return any(ns == namespace for ns, _ in self._functions)

    async def containers_of(self, namespace: str, name: str) -> list[Container]:
        """Every container of a function, stopped ones too (their logs are still wanted)."""
        self.get(namespace, name)
        return await self._runtime.list_functions((namespace, name))

    @property
    def runtime(self) -> DockerRuntime:
        return self._runtime

    # -- deploy, update, delete, scale -----------------------------------------------------------------

    async def deploy(self, spec: FunctionDeployment) -> FunctionStatus:
        key = (spec.namespace, spec.service)
        if key in self._functions or key in self._deploying:
            raise FunctionExistsError(
                f"function {spec.service}.{spec.namespace} already exists (update it with PUT /system/functions)"
            )
        await self._check_deployable(spec)
        self._deploying.add(key)
        try:
            replicas = spec.scale_min(self._config.max_replicas)
            await self._ensure_image(spec.image)
            fn = FunctionState(
                spec=spec,
                generation=uuid.uuid4().hex,
                created_at=format_time(datetime.now(UTC)),
                desired=replicas,
            )
            started = await self._create_replicas(fn, range(replicas))
            fn.replicas = {r.container.id: r for r in started}
            self._scale_store.set(spec.namespace, spec.service, replicas)
            self._functions[key] = fn
            self._publish()
            log.info("function_deployed", function=spec.service, namespace=spec.namespace, replicas=replicas)
            return fn.status()
        finally:
            self._deploying.discard(key)

    async def update(self, spec: FunctionDeployment) -> FunctionStatus:
        fn = self.get(spec.namespace, spec.service)
        await self._check_deployable(spec)
        async with fn.lock:
            await self._ensure_image(spec.image)
            new = FunctionState(spec=spec, generation=uuid.uuid4().hex, created_at=fn.created_at, desired=fn.desired)
            if fn.desired == 0:
                started = [await self._create_parked(new)]
            else:
                started = await self._create_replicas(new, range(fn.desired))
            old = list(fn.replicas.values())
            fn.spec, fn.generation = spec, new.generation
            fn.replicas = {r.container.id: r for r in started}
            self._publish()
            self._spawn(self._retire(old, park=None), f"retire {spec.service}")
            log.info("function_updated", function=spec.service, namespace=spec.namespace, replicas=fn.desired)
            return fn.status()

    async def delete(self, namespace: str, name: str) -> None:
        fn = self.get(namespace, name)
        async with fn.lock:
            self._functions.pop(fn.key, None)
            for replica in fn.replicas.values():
                replica.ready = False
            self._publish()
            containers = await self._runtime.list_functions(fn.key)
            known = {c.id: c for c in containers}
            for replica in fn.replicas.values():
                known.setdefault(replica.container.id, replica.container)
            await self._remove_containers(list(known.values()), grace=False)
            self._scale_store.delete(namespace, name)
            log.info("function_deleted", function=name, namespace=namespace)

    async def scale(self, namespace: str, name: str, replicas: int) -> FunctionStatus:
        fn = self.get(namespace, name)
        async with fn.lock:
            current = fn.by_index()
            running = [r for r in current if r.container.running or r.ready]
            if replicas > len(running):
                await self._scale_up(fn, replicas, current)
            elif replicas < len(running):
                await self._scale_down(fn, replicas)
            fn.desired = replicas
            self._scale_store.set(namespace, name, replicas)
            log.info("function_scaled", function=name, namespace=namespace, replicas=replicas)
            return fn.status()

    async def _scale_up(self, fn: FunctionState, replicas: int, current: list[ReplicaState]) -> None:
        stopped = [r for r in current if not (r.container.running or r.ready)]
        used = {r.container.replica for r in current}
        wanted = replicas - (len(current) - len(stopped))
        restart = stopped[:wanted]
        fresh = [i for i in range(replicas + len(current)) if i not in used][: wanted - len(restart)]
        results = await asyncio.gather(
            *(self._bring_up(fn, r, self._config.ready_timeout_s) for r in restart),
            self._create_replicas(fn, fresh),
            return_exceptions=True,
        )
        for replica in restart:
            fn.replicas[replica.container.id] = replica
        created = results[-1]
        if isinstance(created, list):
            for replica in created:
                fn.replicas[replica.container.id] = replica
        self._publish()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            fn.desired = sum(1 for r in fn.replicas.values() if r.ready)
            self._scale_store.set(fn.spec.namespace, fn.spec.service, fn.desired)
            raise errors[0]

    async def _scale_down(self, fn: FunctionState, replicas: int) -> None:
        drop = fn.by_index()[replicas:]
        park = drop[0] if replicas == 0 and drop else None
        for replica in drop:
            if replica is not park:
                fn.replicas.pop(replica.container.id, None)
        await self._retire(drop, park=park)

    # -- recovery and events ---------------------------------------------------------------------------

    async def recover(self) -> None:
        """Rebuild the view from Docker: adopt running replicas, start missing ones, drop stale ones."""
        containers = await self._runtime.list_functions()
        groups: dict[tuple[str, str], list[Container]] = {}
        for container in containers:
            groups.setdefault(container.key, []).append(container)
        stale: list[Container] = []
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
            fn = FunctionState(
                spec=spec,
                generation=newest.generation,
                created_at=newest.created_label,
                desired=desired,
                replicas={c.id: ReplicaState(container=c) for c in current.values()},
            )
            self._functions[key] = fn
        if stale:
            await self._remove_containers(stale, grace=False)
        await self._network.reconcile(cid for fn in self._functions.values() for cid in fn.replicas)
        await asyncio.gather(*(self._converge(fn) for fn in self._functions.values()))
        self._publish()
        log.info("provider_recovered", functions=len(self._functions), removed_stale=len(stale))

    async def resync(self) -> None:
        """After a gap in the event stream (dockerd restarted): look at every replica again and converge."""
        for fn in list(self._functions.values()):
            for replica in list(fn.replicas.values()):
                info = await self._runtime.inspect(replica.container.id)
                if info is None:
                    fn.replicas.pop(replica.container.id, None)
                    continue
                replica.container = info
                if not info.running:
                    replica.ready = False
        self._publish()
        await asyncio.gather(*(self._converge(fn) for fn in list(self._functions.values())))
        self._publish()

    async def _converge(self, fn: FunctionState) -> None:
        async with fn.lock:
            try:
                ordered = fn.by_index()
                for replica in ordered:
                    if replica.container.running:
                        await self._adopt(fn, replica)
                active = [r for r in ordered if r.container.running]
                if len(active) < fn.desired:
                    await self._scale_up(fn, fn.desired, ordered)
                elif len(active) > fn.desired:
                    await self._scale_down(fn, fn.desired)
            except ProviderError as e:
                log.error(
                    "function_recovery_failed", function=fn.spec.service, namespace=fn.spec.namespace, error=str(e)
                )

    async def _adopt(self, fn: FunctionState, replica: ReplicaState) -> None:
        """A running container found on start or started by someone else: attach it and wait for health."""
        container = replica.container
        attachment = await self._network.connect(container.pid, container.id)
        replica.ip = attachment.ip
        replica.started_at = time.monotonic()
        if await probe(self._session, attachment.ip, self._config.function_port):
            replica.ready = True
        else:
            self._spawn(self._await_ready(fn, replica), f"ready {container.name}")

    async def handle_event(self, event: ContainerEvent) -> None:
        fn = self._functions.get((event.namespace, event.function))
        if event.action == "oom":
            log.warning(
                "replica_oom_killed", function=event.function, namespace=event.namespace, container=event.id[:12]
            )
            return
        if fn is None or event.id in self._managed:
            return
        replica = fn.replicas.get(event.id)
        if replica is None:
            return
        if event.action == "die":
            self._spawn(self._on_died(fn, replica, event.exit_code), f"restart {replica.container.name}")
        elif event.action == "start":
            self._spawn(self._on_started(fn, replica), f"adopt {replica.container.name}")
        elif event.action == "destroy":
            self._spawn(self._on_destroyed(fn, replica), f"replace {replica.container.name}")

    async def _on_died(self, fn: FunctionState, replica: ReplicaState, exit_code: int | None) -> None:
        async with fn.lock:
            if fn.replicas.get(replica.container.id) is not replica or replica.container.id in self._managed:
                return
            replica.ready = False
            self._publish()
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
            if time.monotonic() - replica.started_at > STABLE_AFTER_S:
                replica.restarts = 0
            delay = RESTART_BACKOFF_S[min(replica.restarts, len(RESTART_BACKOFF_S) - 1)]
            replica.restarts += 1
            log.warning(
                "replica_died",
                function=fn.spec.service,
                namespace=fn.spec.namespace,
                container=info.name,
                exit_code=exit_code if exit_code is not None else info.exit_code,
                restart_in_s=delay,
            )
        await asyncio.sleep(delay)
        async with fn.lock:
            if fn.replicas.get(replica.container.id) is not replica or fn.desired == 0:
                return
            try:
                await self._bring_up(fn, replica, self._config.ready_timeout_s)
            except FunctionStartError as e:
                log.error(
                    "replica_restart_failed", function=fn.spec.service, container=replica.container.name, error=str(e)
                )
                return
            self._publish()

    async def _on_started(self, fn: FunctionState, replica: ReplicaState) -> None:
        async with fn.lock:
            if fn.replicas.get(replica.container.id) is not replica or replica.container.id in self._managed:
                return
            info = await self._runtime.inspect(replica.container.id)
            if info is None or not info.running:
                return
            replica.container = info
            replica.ready = False
            self._publish()
            await self._adopt(fn, replica)
            self._publish()
            log.info("replica_reattached", function=fn.spec.service, container=info.name, ip=str(replica.ip))

    async def _on_destroyed(self, fn: FunctionState, replica: ReplicaState) -> None:
        async with fn.lock:
            if fn.replicas.pop(replica.container.id, None) is None:
                return
            self._publish()
            if replica.ip is not None:
                await self._network.detach(replica.ip)
            log.warning("replica_removed_outside", function=fn.spec.service, container=replica.container.name)
            if fn.desired > 0:
                used = {r.container.replica for r in fn.replicas.values()}
                free = next(i for i in range(len(used) + 1) if i not in used)
                try:
                    for new in await self._create_replicas(fn, [free]):
                        fn.replicas[new.container.id] = new
                except ProviderError as e:
                    log.error("replica_replace_failed", function=fn.spec.service, error=str(e))
            elif not fn.replicas:
                parked = await self._create_parked(fn)
                fn.replicas[parked.container.id] = parked
            self._publish()

    async def _await_ready(self, fn: FunctionState, replica: ReplicaState) -> None:
        """A replica that is running but not yet healthy: keep checking until it is, then publish it."""
        while fn.replicas.get(replica.container.id) is replica and replica.ip is not None and not replica.ready:
            if await probe(self._session, replica.ip, self._config.function_port):
                replica.ready = True
                self._publish()
                return
            await asyncio.sleep(SLOW_READY_POLL_S)

    # -- replicas --------------------------------------------------------------------------------------

    async def _create_replicas(self, fn: FunctionState, indexes: Iterable[int]) -> list[ReplicaState]:
        """Create and start replicas, all ready; on any failure none of them is left behind."""
        indexes = list(indexes)
        if not indexes:
            return []
        results = await asyncio.gather(*(self._create_one(fn, i) for i in indexes), return_exceptions=True)
        made = [r for r in results if isinstance(r, ReplicaState)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self._remove_containers([r.container for r in made], grace=False)
            raise errors[0]
        return made

    async def _create_one(self, fn: FunctionState, index: int) -> ReplicaState:
        replica = await self._create_container(fn, index)
        try:
            await self._bring_up(fn, replica, self._config.ready_timeout_s)
        except BaseException:
            await self._remove_containers([replica.container], grace=False)
            raise
        return replica

    async def _create_container(self, fn: FunctionState, index: int) -> ReplicaState:
        spec = ReplicaSpec(spec=fn.spec, replica=index, generation=fn.generation, created=fn.created_at)
        paths = {name: self._secrets.path(fn.spec.namespace, name) for name in fn.spec.secrets}
        container_id = await self._runtime.create(spec.container_name, container_config(spec, self._config, paths))
        info = await self._runtime.inspect(container_id)
        if info is None:
            raise FunctionStartError(f"container {spec.container_name} disappeared right after it was created")
        return ReplicaState(container=info)

    async def _create_parked(self, fn: FunctionState) -> ReplicaState:
        """A created but stopped container: how a function scaled to zero keeps existing in Docker."""
        return await self._create_container(fn, 0)

    async def _bring_up(self, fn: FunctionState, replica: ReplicaState, deadline_s: float) -> None:
        """Start (if needed), attach to the bridge and wait until healthy; marks the replica ready."""
        cid = replica.container.id
        self._managed.add(cid)
        try:
            info = await self._runtime.start(cid)
            replica.container = info
            if not info.running:
                raise FunctionStartError(self._exit_message(fn, info))
            attachment = await self._network.connect(info.pid, cid)
            replica.ip = attachment.ip
            replica.started_at = time.monotonic()

            async def still_running() -> str | None:
                current = await self._runtime.inspect(cid)
                if current is None:
                    return "its container was removed"
                replica.container = current
                return None if current.running else self._exit_message(fn, current)

            try:
                await wait_ready(self._session, attachment.ip, self._config.function_port, deadline_s, still_running)
            except NotReadyError as e:
                tail = await self._log_tail(cid)
                raise FunctionStartError(
                    f"function {fn.spec.service}.{fn.spec.namespace} did not become ready: {e}{tail}"
                ) from None
            replica.ready = True
        finally:
            self._managed.discard(cid)

    def _exit_message(self, fn: FunctionState, info: Container) -> str:
        why = "it was killed for using more memory than its limit" if info.oom_killed else f"status {info.exit_code}"
        return f"its container exited ({why})"

    async def _log_tail(self, container_id: str, lines: int = 5) -> str:
        try:
            found = [line.text async for line in self._runtime.logs(container_id, tail=lines, since=None, follow=False)]
        except ProviderError:
            return ""
        return ("; last output: " + " | ".join(found)) if found else ""

    async def _retire(self, replicas: list[ReplicaState], park: ReplicaState | None) -> None:
        """Take replicas out of the hosts file, give the gateway a moment to notice, then stop them.

        ``park`` is kept as a stopped container (a function scaled to zero); the others are removed.
        """
        if not replicas:
            return
        for replica in replicas:
            replica.ready = False
        self._publish()
        await asyncio.sleep(RETIRE_GRACE_S)
        removed = [r.container for r in replicas if r is not park]
        jobs = [self._remove_containers(removed, grace=True)]
        if park is not None:
            jobs.append(self._stop(park))
        await asyncio.gather(*jobs)

    async def _stop(self, replica: ReplicaState) -> None:
        cid = replica.container.id
        self._managed.add(cid)
        try:
            await self._runtime.stop(cid, self._config.stop_timeout_s)
            info = await self._runtime.inspect(cid)
            if info is not None:
                replica.container = info
        finally:
            self._managed.discard(cid)

    async def _remove_containers(self, containers: list[Container], *, grace: bool) -> None:
        async def remove(container: Container) -> None:
            self._managed.add(container.id)
            try:
                if grace and container.running:
                    await self._runtime.stop(container.id, self._config.stop_timeout_s)
                elif container.running:
                    await self._runtime.stop(container.id, min(self._config.stop_timeout_s, 2.0))
                await self._runtime.remove(container.id)
                ip = await self._network.lookup(container.id)
                if ip is not None:
                    await self._network.detach(ip)
            finally:
                self._managed.discard(container.id)

        results = await asyncio.gather(*(remove(c) for c in containers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("container_remove_failed", error=str(result))

    # -- checks ------------------------------------------------------------------------------------------

    def _require_namespace(self, namespace: str) -> None:
        if not self._namespaces.exists(namespace):
            raise NamespaceInvalidError(f"namespace {namespace} does not exist")

    async def _check_deployable(self, spec: FunctionDeployment) -> None:
        self._require_namespace(spec.namespace)
        missing = self._secrets.missing(spec.namespace, spec.secrets)
        if missing:
            raise SecretMissingError(
                f"unable to find secret: {', '.join(missing)} (in namespace {spec.namespace}; "
                "create it with faas-cli secret create)"
            )

    async def _ensure_image(self, image: str) -> None:
        policy = self._config.pull_policy
        if policy is PullPolicy.ALWAYS:
            await self._runtime.pull(image, self._config.docker_config)
            return
        if await self._runtime.image_present(image):
            return
        if policy is PullPolicy.NEVER:
            raise ImageUnavailableError(f"image {image} is not present locally and the pull policy is never")
        log.info("image_pulling", image=image)
        await self._runtime.pull(image, self._config.docker_config)

    # -- hosts file and tasks ----------------------------------------------------------------------------

    def _publish(self) -> None:
        replicas = [
            Replica(name=fn.spec.service, namespace=fn.spec.namespace, ip=r.ip)
            for fn in self._functions.values()
            for r in fn.replicas.values()
            if r.ready and r.ip is not None
        ]
        write_hosts(self._config.hosts_path, self._config.net.bridge_ip, replicas)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", task=task.get_name(), error=repr(task.exception()))


async def follow_events(orchestrator: Orchestrator, runtime: DockerRuntime) -> None:
    """Feed Docker's container events to the orchestrator, reconnecting if the stream ends."""
    while True:
        try:
            async for event in runtime.events():
                await orchestrator.handle_event(event)
        except (aiohttp.ClientError, OSError, ProviderError) as e:
            log.warning("docker_events_lost", error=str(e))
        await asyncio.sleep(1.0)
        with contextlib.suppress(ProviderError):
            await orchestrator.resync()
