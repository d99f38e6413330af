"""The faas-provider API's operations on functions for ``PYFAASD_BACKEND=swarm``: functions are Swarm services.

Swarm keeps the desired state (services, their replica counts, restarts, rolling updates), so this class keeps
none of its own: every query asks Swarm. What Swarm does not do for the gateway is said which replicas answer:
the ``Publisher`` lists the running tasks of this instance's services, probes each task's watchdog on its
overlay address once (``/_/health``), and writes the ready ones into the hosts file the gateway follows
(docs/swarm.md, "Discovery"). Every address is on the overlay, so the gateway and this provider must be
attached to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Final

import structlog

from netconf import write_hosts
from netconf.hosts import Replica
from netconf.routes import write_routes
from provider.code_functions import RuntimeImage, code_users, runtime_library
from provider.config import ProviderConfig
from provider.docker_runtime import LABEL_CREATED, LABEL_FUNCTION, LABEL_NAMESPACE, LABEL_SPEC
from provider.errors import (
    FunctionExistsError,
    FunctionNotFoundError,
    FunctionStartError,
)
from provider.logs import LogMessage, LogRequest
from provider.models import FunctionDeployment, FunctionStatus, FunctionUsage, format_time
from provider.namespaces import NamespaceStore
from provider.routes import check_routes, published_routes
from provider.runtime import ContainerUsage, Probe
from provider.swarm_code import CodeFile, SwarmCode, config_ids
from provider.swarm_runtime import Service, Swarm, Task
from provider.swarm_secrets import SwarmSecrets
from provider.swarm_spec import LABEL_NETWORK, SecretMount, service_name, service_spec, with_replicas
from provider.volumes import ResolvedMount, VolumeStore, volume_mounts

log = structlog.get_logger("provider.swarm")

PUBLISH_INTERVAL_S: Final = 0.5
WAIT_STEP_S: Final = 0.2
_NEVER = datetime(1, 1, 1, tzinfo=UTC)


class Publisher:
    """The ready tasks of this instance's services, written into the hosts file as they change."""

    def __init__(self, config: ProviderConfig, runtime: Swarm, probe: Probe) -> None:
        self._config = config
        self._runtime = runtime
        self._probe = probe
        self._healthy: dict[str, IPv4Address] = {}  # task ID -> its overlay address, once it answered healthy
        self.ready: dict[tuple[str, str], tuple[IPv4Address, ...]] = {}
        self.failures: dict[tuple[str, str], str] = {}  # the last task error of each function, if any
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def refresh(self) -> None:
        """List services and tasks, probe the tasks not yet seen healthy, write the hosts file."""
        services = await self._runtime.services(f"{LABEL_NETWORK}={self._config.swarm_network}")
        keys = {s.id: (s.labels.get(LABEL_NAMESPACE, ""), s.labels.get(LABEL_FUNCTION, "")) for s in services}
        tasks = await self._runtime.tasks(list(keys))
        running = [t for t in tasks if t.running and t.ip is not None and t.service_id in keys]
        fresh = [t for t in running if t.id not in self._healthy]
        answers = await asyncio.gather(*(self._probe.healthy(t.ip) for t in fresh if t.ip is not None))
        alive = {t.id for t in running}
        self._healthy = {tid: ip for tid, ip in self._healthy.items() if tid in alive}
        for task, healthy in zip(fresh, answers, strict=True):
            if healthy and task.ip is not None:
                self._healthy[task.id] = task.ip
        ready: dict[tuple[str, str], list[IPv4Address]] = defaultdict(list)
        for task in running:
            if task.id in self._healthy:
                ready[keys[task.service_id]].append(self._healthy[task.id])
        self.failures = _failures(tasks, keys)
        self.ready = {key: tuple(sorted(ips)) for key, ips in ready.items()}
        replicas = [Replica(name, ns, ip) for (ns, name), ips in self.ready.items() for ip in ips]
        if write_hosts(self._config.hosts_path, self._config.net.bridge_ip, replicas):
            log.info("hosts_published", replicas=len(replicas))
        # the functions' own domains and paths, for the gateway (as the docker backend's replicas.py writes them)
        write_routes(self._config.routes_path, published_routes(deployed_specs(services)))
        async with self._changed:
            self._changed.notify_all()

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as e:  # a failed round is retried; the hosts file keeps the last good list
                log.warning("publish_failed", error=str(e))
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="swarm publisher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_round(self, timeout_s: float) -> None:
        """Until the next refresh (or ``timeout_s``)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)


def deployed_specs(services: list[Service]) -> list[FunctionDeployment]:
    return [FunctionDeployment.from_label(s.labels[LABEL_SPEC]) for s in services if LABEL_SPEC in s.labels]


def _failures(tasks: list[Task], keys: dict[str, tuple[str, str]]) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for task in tasks:
        if task.error and task.service_id in keys:
            out[keys[task.service_id]] = task.error
    return out


@dataclass(frozen=True, slots=True)
class _Checked:
    secrets: list[SecretMount]
    code: list[CodeFile] | None  # the files of a code function's bundle


class SwarmFunctions:
    def __init__(
        self,
        config: ProviderConfig,
        runtime: Swarm,
        publisher: Publisher,
        namespaces: NamespaceStore,
        secrets: SwarmSecrets,
        volumes: VolumeStore,
        code: SwarmCode,
    ) -> None:
        self._config = config
        self._code = code
        self._secrets = secrets
        self._volumes = volumes
        self._runtime = runtime
        self._publisher = publisher
        self._namespaces = namespaces
        self._locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    # -- queries ---------------------------------------------------------------------------------------

    async def list_functions(self, namespace: str) -> list[FunctionStatus]:
        self._namespaces.require(namespace)
        services = await self._runtime.services(f"{LABEL_NETWORK}={self._config.swarm_network}")
        found = [self._status(s) for s in services if s.labels.get(LABEL_NAMESPACE) == namespace]
        return sorted(found, key=lambda s: s.spec.service)

    async def status(self, namespace: str, name: str) -> FunctionStatus:
        return self._status(await self._service(namespace, name))

    def _status(self, service: Service) -> FunctionStatus:
        spec = FunctionDeployment.from_label(service.labels[LABEL_SPEC])
        created = service.labels.get(LABEL_CREATED, "")
        return FunctionStatus(
            spec=spec,
            replicas=service.replicas,
            available_replicas=len(self._publisher.ready.get((spec.namespace, spec.service), ())),
            created_at=datetime.fromisoformat(created) if created else _NEVER,
        )

    async def _service(self, namespace: str, name: str) -> Service:
        """This instance's service of the function, after checking its namespace exists (400) and it does (404)."""
        self._namespaces.require(namespace)
        service = await self._runtime.service(service_name(namespace, name))
        if service is None or service.labels.get(LABEL_NETWORK) != self._config.swarm_network:
            raise FunctionNotFoundError(f"function {name}.{namespace} not found")
        return service

    async def usage(self, namespace: str, name: str) -> FunctionUsage:
        """CPU and memory the function's running tasks on this node use now (read in parallel, about a second);
        tasks on other nodes are not counted yet (docs/swarm.md)."""
        service = await self._service(namespace, name)
        tasks = [t for t in await self._runtime.tasks([service.id]) if t.running and t.container_id]
        found = await asyncio.gather(*(self._runtime.usage(t.container_id) for t in tasks), return_exceptions=True)
        usages = [u for u in found if isinstance(u, ContainerUsage)]
        return FunctionUsage(
            cpu=sum(u.cpu_millis for u in usages), total_memory_bytes=sum(u.memory_bytes for u in usages)
        )

    async def open_logs(self, request: LogRequest) -> AsyncIterator[LogMessage]:
        """The function's log lines from the service logs (Swarm merges its tasks'); ``instance`` is a task ID
        prefix. With ``follow``, until the client goes away. A missing function is a 404 here, not later."""
        service = await self._service(request.namespace, request.name)
        return self._log_lines(service, request)

    async def _log_lines(self, service: Service, request: LogRequest) -> AsyncIterator[LogMessage]:
        async for found in self._runtime.service_logs(
            service.id, tail=request.tail, since=request.since, follow=request.follow
        ):
            if found.task_id.startswith(request.instance):
                yield LogMessage(request.name, request.namespace, found.task_id, found.line)

    def problem(self) -> str | None:
        """None: Swarm keeps the tasks running whatever this provider does."""
        return None

    # -- deploy, update, delete, scale -----------------------------------------------------------------

    async def deploy(self, spec: FunctionDeployment) -> FunctionStatus:
        key = (spec.namespace, spec.service)
        async with self._locks[key]:
            checked = await self._check_deployable(spec)
            if await self._runtime.service(service_name(spec.namespace, spec.service)) is not None:
                raise FunctionExistsError(
                    f"function {spec.service}.{spec.namespace} already exists (update it with PUT /system/functions)"
                )
            replicas = spec.scale_min(self._config.max_replicas)
            created = format_time(datetime.now(UTC))
            async with self._volumes_for(spec) as volumes, self._code.mounts(spec, checked.code) as code:
                body = service_spec(
                    spec,
                    self._config,
                    replicas=replicas,
                    created=created,
                    generation=uuid.uuid4().hex,
                    secrets=checked.secrets,
                    volumes=volumes,
                    code=code,
                )
                service_id = await self._runtime.create_service(body)
                try:
                    await self._await_ready(key, replicas)
                except FunctionStartError:
                    await self._runtime.remove_service(service_id)  # leave nothing half-made
                    raise
            log.info("function_deployed", function=spec.service, namespace=spec.namespace, replicas=replicas)
            return await self.status(spec.namespace, spec.service)

    async def update(self, spec: FunctionDeployment) -> FunctionStatus:
        async with self._locks[(spec.namespace, spec.service)]:
            service = await self._service(spec.namespace, spec.service)
            checked = await self._check_deployable(spec)
            if service.labels.get(LABEL_SPEC) == spec.to_label():
                log.info("function_unchanged", function=spec.service, namespace=spec.namespace)
                return self._status(service)
            async with self._volumes_for(spec) as volumes, self._code.mounts(spec, checked.code) as code:
                body = service_spec(
                    spec,
                    self._config,
                    replicas=service.replicas,
                    created=service.labels.get(LABEL_CREATED, format_time(datetime.now(UTC))),
                    generation=uuid.uuid4().hex,
                    secrets=checked.secrets,
                    volumes=volumes,
                    code=code,
                )
                await self._runtime.update_service(service, body)  # Swarm rolls the tasks, new ones first
            # the configs of the replaced spec stay (Swarm's rollback target), older ones go
            kept = config_ids(service.spec) | {c.id for c in code.configs}
            await self._code.remove_unused(spec.namespace, spec.service, kept)
            log.info("function_updated", function=spec.service, namespace=spec.namespace, replicas=service.replicas)
            return await self.status(spec.namespace, spec.service)

    async def delete(self, namespace: str, name: str) -> None:
        async with self._locks[(namespace, name)]:
            service = await self._service(namespace, name)
            await self._runtime.remove_service(service.id)
            await self._code.remove_unused(namespace, name, ())  # its code's configs (no service mounts them now)
            await self._publisher.refresh()  # out of the hosts file now, not at the next round
            log.info("function_deleted", function=name, namespace=namespace)

    async def scale(self, namespace: str, name: str, replicas: int) -> FunctionStatus:
        async with self._locks[(namespace, name)]:
            service = await self._service(namespace, name)
            if replicas != service.replicas:
                await self._runtime.update_service(service, with_replicas(service.spec, replicas))
            if replicas > service.replicas:
                # As the docker backend: answered once the new replicas serve (in the hosts file, in DNS); if they
                # do not, the function keeps what does serve and the 422 says why.
                try:
                    await self._await_ready((namespace, name), replicas)
                except FunctionStartError:
                    ready = len(self._publisher.ready.get((namespace, name), ()))
                    current = await self._service(namespace, name)
                    await self._runtime.update_service(current, with_replicas(current.spec, ready))
                    raise
            log.info("function_scaled", function=name, namespace=namespace, replicas=replicas)
            return await self.status(namespace, name)

    # -- checks ------------------------------------------------------------------------------------------

    async def _check_deployable(self, spec: FunctionDeployment) -> _Checked:
        """The checks before anything is made (400s); the secrets the deployment mounts and its code's files."""
        self._namespaces.require(spec.namespace)
        spec.scale_labels(self._config.max_replicas)
        volume_mounts(spec)  # a malformed volume annotation is a 400 before anything is made
        code = await self._code.check(spec)
        check_routes(spec, await self._specs())  # 409 naming the function that holds the domain or path
        return _Checked(await self._secrets.mounts(spec.namespace, spec.secrets), code)

    @contextlib.asynccontextmanager
    async def _volumes_for(self, spec: FunctionDeployment) -> AsyncIterator[list[ResolvedMount]]:
        """The volumes ``spec`` mounts (400 for a missing one; its auto volume made on first use); if the
        operation then fails, an auto volume made for it now is removed again."""
        mounts, made = await self._volumes.resolve(spec)
        try:
            yield mounts
        except BaseException:
            for name in made:
                await self._volumes.delete(name, [])
            raise

    async def code_usage(self) -> dict[str, list[str]]:
        """The functions using each code bundle, as ``name.namespace``."""
        return code_users(await self._specs())

    async def runtimes(self) -> list[RuntimeImage]:
        """The runtime library of this node (the manager): the images labelled as runtimes. Every node a task
        may land on needs the same image (docs/swarm.md)."""
        return await runtime_library(self._runtime)

    async def prune_dependencies(self) -> list[str]:
        """None to prune: the swarm backend installs no requirements (docs/swarm.md)."""
        return []

    async def volume_users(self) -> dict[str, list[str]]:
        """The functions mounting each volume, as ``name.namespace``."""
        return self._volumes.users(await self._specs())

    async def _specs(self) -> list[FunctionDeployment]:
        return deployed_specs(await self._runtime.services(f"{LABEL_NETWORK}={self._config.swarm_network}"))

    async def _await_ready(self, key: tuple[str, str], replicas: int) -> None:
        """Until ``replicas`` tasks of the function answer healthy; FunctionStartError (422) with Swarm's last
        task error after the ready timeout."""
        deadline = time.monotonic() + self._config.ready_timeout_s
        while len(self._publisher.ready.get(key, ())) < replicas:
            if time.monotonic() > deadline:
                why = self._publisher.failures.get(key, "no task answered /_/health")
                raise FunctionStartError(
                    f"function {key[1]}.{key[0]} did not become ready within {self._config.ready_timeout_s:g}s: {why}"
                )
            await self._publisher.wait_round(WAIT_STEP_S + PUBLISH_INTERVAL_S)
