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
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Final

import structlog

from netconf import write_hosts
from netconf.hosts import Replica
from netconf.routes import write_routes
from provider.code_functions import ANNOTATION_CODE, ANNOTATION_DEV
from provider.config import ProviderConfig
from provider.docker_runtime import LABEL_CREATED, LABEL_FUNCTION, LABEL_NAMESPACE, LABEL_SPEC
from provider.errors import (
    FunctionExistsError,
    FunctionNotFoundError,
    FunctionStartError,
    InvalidRequestError,
)
from provider.logs import LogMessage, LogRequest
from provider.models import FunctionDeployment, FunctionStatus, FunctionUsage, format_time
from provider.namespaces import NamespaceStore
from provider.routes import check_routes, published_routes
from provider.runtime import ContainerUsage, Probe
from provider.swarm_runtime import Service, Swarm, Task
from provider.swarm_secrets import SwarmSecrets
from provider.swarm_spec import LABEL_NETWORK, SecretMount, service_name, service_spec, with_replicas
from provider.volumes import ANNOTATION_PREFIX as VOLUME_ANNOTATION_PREFIX

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


class SwarmFunctions:
    def __init__(
        self,
        config: ProviderConfig,
        runtime: Swarm,
        publisher: Publisher,
        namespaces: NamespaceStore,
        secrets: SwarmSecrets,
    ) -> None:
        self._config = config
        self._secrets = secrets
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

    async def logs(self, request: LogRequest) -> AsyncIterator[LogMessage]:
        """The function's log lines from the service logs (Swarm merges its tasks'); ``instance`` is a task ID
        prefix. With ``follow``, until the client goes away."""
        service = await self._service(request.namespace, request.name)
        async for found in self._runtime.service_logs(
            service.id, tail=request.tail, since=request.since, follow=request.follow
        ):
            if found.task_id.startswith(request.instance):
                yield LogMessage(request.name, request.namespace, found.task_id, found.line)

    # -- deploy, update, delete, scale -----------------------------------------------------------------

    async def deploy(self, spec: FunctionDeployment) -> FunctionStatus:
        key = (spec.namespace, spec.service)
        async with self._locks[key]:
            secrets = await self._check_deployable(spec)
            if await self._runtime.service(service_name(spec.namespace, spec.service)) is not None:
                raise FunctionExistsError(
                    f"function {spec.service}.{spec.namespace} already exists (update it with PUT /system/functions)"
                )
            replicas = spec.scale_min(self._config.max_replicas)
            created = format_time(datetime.now(UTC))
            body = service_spec(
                spec, self._config, replicas=replicas, created=created, generation=uuid.uuid4().hex, secrets=secrets
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
            secrets = await self._check_deployable(spec)
            if service.labels.get(LABEL_SPEC) == spec.to_label():
                log.info("function_unchanged", function=spec.service, namespace=spec.namespace)
                return self._status(service)
            body = service_spec(
                spec,
                self._config,
                replicas=service.replicas,
                created=service.labels.get(LABEL_CREATED, format_time(datetime.now(UTC))),
                generation=uuid.uuid4().hex,
                secrets=secrets,
            )
            await self._runtime.update_service(service, body)  # Swarm rolls the tasks, new ones first
            log.info("function_updated", function=spec.service, namespace=spec.namespace, replicas=service.replicas)
            return await self.status(spec.namespace, spec.service)

    async def delete(self, namespace: str, name: str) -> None:
        async with self._locks[(namespace, name)]:
            service = await self._service(namespace, name)
            await self._runtime.remove_service(service.id)
            await self._publisher.refresh()  # out of the hosts file now, not at the next round
            log.info("function_deleted", function=name, namespace=namespace)

    async def scale(self, namespace: str, name: str, replicas: int) -> FunctionStatus:
        async with self._locks[(namespace, name)]:
            service = await self._service(namespace, name)
            if replicas != service.replicas:
                await self._runtime.update_service(service, with_replicas(service.spec, replicas))
            log.info("function_scaled", function=name, namespace=namespace, replicas=replicas)
            return await self.status(namespace, name)

    # -- checks ------------------------------------------------------------------------------------------

    async def _check_deployable(self, spec: FunctionDeployment) -> list[SecretMount]:
        """The checks before anything is made (400s); the secrets the deployment mounts."""
        self._namespaces.require(spec.namespace)
        spec.scale_labels(self._config.max_replicas)
        unsupported = sorted(
            key
            for key in spec.annotations or {}
            if key in (ANNOTATION_CODE, ANNOTATION_DEV) or key.startswith(VOLUME_ANNOTATION_PREFIX)
        )
        if unsupported:
            raise InvalidRequestError(
                f"function {spec.service}.{spec.namespace}: the swarm backend does not run code functions or mount "
                f"volumes yet (annotations {', '.join(unsupported)}; docs/swarm.md)"
            )
        services = await self._runtime.services(f"{LABEL_NETWORK}={self._config.swarm_network}")
        check_routes(spec, deployed_specs(services))  # 409 naming the function that holds the domain or path
        return await self._secrets.mounts(spec.namespace, spec.secrets)

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
