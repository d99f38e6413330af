"""The swarm backend's operations and publisher (provider/swarm_functions.py) over an in-memory swarm: a service
gets as many tasks as it asks for, each with an overlay address; the probe says which answer healthy."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from netconf import NetConfig, read_hosts
from netconf.routes import read_routes
from provider.config import ProviderConfig
from provider.errors import (
    FunctionExistsError,
    FunctionNotFoundError,
    FunctionStartError,
    InvalidRequestError,
    RouteConflictError,
    SecretExistsError,
    SecretInUseError,
    SecretMissingError,
    SecretNotFoundError,
)
from provider.logs import LogRequest
from provider.models import FunctionDeployment
from provider.namespaces import NamespaceStore
from provider.runtime import ContainerUsage, LogLine
from provider.swarm_functions import Publisher, SwarmFunctions
from provider.swarm_runtime import SecretInfo, Service, Task, TaskLogLine
from provider.swarm_secrets import SwarmSecrets
from provider.swarm_spec import service_spec


@dataclass
class MemorySwarm:
    services_by_name: dict[str, Service] = field(default_factory=dict)
    tasks_of: dict[str, list[Task]] = field(default_factory=dict)
    addresses: itertools.count[int] = field(default_factory=lambda: itertools.count(2))
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    start_error: str = ""  # set: tasks fail with it instead of running
    secrets_by_id: dict[str, tuple[SecretInfo, bytes]] = field(default_factory=dict)

    def _converge(self, service: Service) -> None:
        tasks = [t for t in self.tasks_of.get(service.id, []) if t.running]
        while len(tasks) > service.replicas:
            tasks.pop()
        while len(tasks) < service.replicas:
            n = next(self.ids)
            if self.start_error:
                failed = Task(f"t{n}", service.id, "rejected", "running", None, "node1", self.start_error)
                self.tasks_of.setdefault(service.id, []).append(failed)
                return
            tasks.append(Task(f"t{n}", service.id, "running", "running", self.address(), "node1", "", f"c{n}"))
        self.tasks_of[service.id] = tasks

    def address(self) -> IPv4Address:
        return IPv4Address("10.70.0.0") + next(self.addresses)

    async def services(self, label: str) -> list[Service]:
        key, value = label.split("=", 1)
        return [s for s in self.services_by_name.values() if s.labels.get(key) == value]

    async def service(self, name: str) -> Service | None:
        return self.services_by_name.get(name)

    async def create_service(self, spec: Mapping[str, Any]) -> str:
        service = Service(f"s{next(self.ids)}", spec["Name"], 1, spec["Labels"], _replicas(spec), spec)
        self.services_by_name[service.name] = service
        self._converge(service)
        return service.id

    async def update_service(self, service: Service, spec: Mapping[str, Any]) -> None:
        new = Service(service.id, service.name, service.version + 1, spec["Labels"], _replicas(spec), spec)
        self.services_by_name[service.name] = new
        if spec != service.spec and _replicas(spec) == service.replicas:
            self.tasks_of[service.id] = []  # a rolling update: new tasks throughout
        self._converge(new)

    async def remove_service(self, service_id: str) -> None:
        self.services_by_name = {n: s for n, s in self.services_by_name.items() if s.id != service_id}
        self.tasks_of.pop(service_id, None)

    async def tasks(self, service_ids: list[str]) -> list[Task]:
        return [t for sid in service_ids for t in self.tasks_of.get(sid, [])]

    async def secrets(self, label: str) -> list[SecretInfo]:
        key, value = label.split("=", 1)
        return [info for info, _ in self.secrets_by_id.values() if info.labels.get(key) == value]

    async def create_secret(self, name: str, value: bytes, labels: Mapping[str, str]) -> str:
        assert all(info.name != name for info, _ in self.secrets_by_id.values()), "Swarm refuses a taken name"
        n = next(self.ids)
        self.secrets_by_id[f"x{n}"] = (SecretInfo(f"x{n}", name, dict(labels), f"2026-12-02T00:00:{n:02d}Z"), value)
        return f"x{n}"

    async def remove_secret(self, secret_id: str) -> None:
        for service in self.services_by_name.values():
            refs = service.spec["TaskTemplate"]["ContainerSpec"]["Secrets"]
            assert all(ref["SecretID"] != secret_id for ref in refs), "Swarm refuses to remove a secret in use"
        self.secrets_by_id.pop(secret_id, None)

    logs_of: dict[str, list[TaskLogLine]] = field(default_factory=dict)

    async def service_logs(
        self, service_id: str, *, tail: int | None, since: datetime | None, follow: bool
    ) -> AsyncIterator[TaskLogLine]:
        assert not follow
        lines = [t for t in self.logs_of.get(service_id, []) if since is None or t.line.timestamp >= since]
        for line in lines[-tail:] if tail else lines:
            yield line

    usage_of: dict[str, ContainerUsage] = field(default_factory=dict)

    async def usage(self, container_id: str) -> ContainerUsage | None:
        return self.usage_of.get(container_id)

    def mounted(self, service: str) -> dict[str, bytes]:
        """What the service's tasks would find under /var/openfaas/secrets."""
        refs = self.services_by_name[service].spec["TaskTemplate"]["ContainerSpec"]["Secrets"]
        return {ref["File"]["Name"]: self.secrets_by_id[ref["SecretID"]][1] for ref in refs}


def _replicas(spec: Mapping[str, Any]) -> int:
    return int(spec["Mode"]["Replicated"]["Replicas"])


@dataclass
class Probe:
    unhealthy: set[IPv4Address] = field(default_factory=set)
    asked: list[IPv4Address] = field(default_factory=list)

    async def healthy(self, ip: IPv4Address) -> bool:
        self.asked.append(ip)
        return ip not in self.unhealthy

    async def in_flight(self, ip: IPv4Address, metrics_port: int) -> float | None:
        del ip, metrics_port
        return None


@dataclass
class Backend:
    swarm: MemorySwarm
    probe: Probe
    publisher: Publisher
    functions: SwarmFunctions
    secrets: SwarmSecrets
    hosts: Path

    def published(self, name: str) -> list[str]:
        return [str(ip) for ip in read_hosts(self.hosts).lookup(f"{name}.openfaas-fn")]


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    config = ProviderConfig(net=NetConfig(state_dir=tmp_path), swarm_network="fnnet", ready_timeout_s=1.2)
    swarm, probe = MemorySwarm(), Probe()
    publisher = Publisher(config, swarm, probe)
    namespaces = NamespaceStore(tmp_path / "namespaces")
    secrets = SwarmSecrets(config, swarm, namespaces)
    functions = SwarmFunctions(config, swarm, publisher, namespaces, secrets)
    publisher.start()
    try:
        yield Backend(swarm, probe, publisher, functions, secrets, config.hosts_path)
    finally:
        await publisher.close()


def echo(**body: object) -> FunctionDeployment:
    return FunctionDeployment.parse({"service": "echo", "image": "pyfaasd/fn-echo-http", **body})


async def test_deploy_waits_for_the_healthy_tasks_and_publishes_them(backend: Backend) -> None:
    status = await backend.functions.deploy(echo(labels={"com.openfaas.scale.min": "2"}))
    assert (status.replicas, status.available_replicas) == (2, 2)
    assert len(backend.published("echo")) == 2
    listed = await backend.functions.list_functions("openfaas-fn")
    assert [s.spec.service for s in listed] == ["echo"]
    with pytest.raises(FunctionExistsError):
        await backend.functions.deploy(echo())


async def test_an_unhealthy_task_is_not_published_and_probed_again(backend: Backend) -> None:
    backend.probe.unhealthy.add(IPv4Address("10.70.0.2"))  # the first task's address
    with pytest.raises(FunctionStartError, match="did not become ready"):
        await backend.functions.deploy(echo())
    assert backend.swarm.services_by_name == {}  # nothing half-made
    assert backend.probe.asked.count(IPv4Address("10.70.0.2")) >= 2


async def test_a_task_swarm_cannot_run_makes_the_deploy_422_with_its_error(backend: Backend) -> None:
    backend.swarm.start_error = "No such image: pyfaasd/fn-echo-http"
    with pytest.raises(FunctionStartError, match="No such image"):
        await backend.functions.deploy(echo())
    assert backend.swarm.services_by_name == {}


async def test_scale_update_and_delete(backend: Backend) -> None:
    await backend.functions.deploy(echo())
    first = backend.published("echo")
    status = await backend.functions.scale("openfaas-fn", "echo", 3)
    assert status.replicas == 3
    await backend.publisher.refresh()
    assert len(backend.published("echo")) == 3

    unchanged = await backend.functions.update(echo())
    assert unchanged.replicas == 3
    assert set(first) <= set(backend.published("echo"))  # the same spec rolls nothing

    updated = await backend.functions.update(echo(envVars={"K": "v2"}))
    assert updated.spec.env_vars == {"K": "v2"}
    await backend.publisher.refresh()
    assert not set(first) & set(backend.published("echo"))  # new tasks

    await backend.functions.delete("openfaas-fn", "echo")
    assert backend.published("echo") == []
    with pytest.raises(FunctionNotFoundError):
        await backend.functions.status("openfaas-fn", "echo")


async def test_a_missing_secret_is_refused_before_anything_is_made(backend: Backend) -> None:
    with pytest.raises(SecretMissingError, match="db"):
        await backend.functions.deploy(echo(secrets=["db"]))
    assert backend.swarm.services_by_name == {}


@pytest.mark.parametrize(
    "annotations",
    [{"com.pyfaasd.code": "sha256:00"}, {"com.pyfaasd.dev": "/src"}, {"com.pyfaasd.volume.data": "/data"}],
)
async def test_code_functions_and_volumes_are_refused_until_the_swarm_backend_has_them(
    backend: Backend, annotations: dict[str, str]
) -> None:
    with pytest.raises(InvalidRequestError, match="swarm backend does not run code functions or mount volumes"):
        await backend.functions.deploy(echo(annotations=annotations))
    assert backend.swarm.services_by_name == {}


async def test_secrets_are_swarm_secrets_mounted_and_rolled_on_update(backend: Backend) -> None:
    await backend.secrets.create("openfaas-fn", "db", b"one")
    with pytest.raises(SecretExistsError):
        await backend.secrets.create("openfaas-fn", "db", b"two")
    assert await backend.secrets.names("openfaas-fn") == ["db"]
    await backend.functions.deploy(echo(secrets=["db"]))
    assert backend.swarm.mounted("openfaas-fn_echo") == {"/var/openfaas/secrets/db": b"one"}

    await backend.secrets.update("openfaas-fn", "db", b"two")
    assert backend.swarm.mounted("openfaas-fn_echo") == {"/var/openfaas/secrets/db": b"two"}
    assert len(backend.swarm.secrets_by_id) == 1  # the old value is gone
    with pytest.raises(SecretNotFoundError):
        await backend.secrets.update("openfaas-fn", "nope", b"x")

    with pytest.raises(SecretInUseError, match=r"echo\.openfaas-fn"):
        await backend.secrets.delete("openfaas-fn", "db")
    await backend.functions.delete("openfaas-fn", "echo")
    await backend.secrets.delete("openfaas-fn", "db")
    assert backend.swarm.secrets_by_id == {}
    assert await backend.secrets.names("openfaas-fn") == []


async def test_services_of_another_instance_are_not_seen(backend: Backend) -> None:
    config = ProviderConfig(swarm_network="someone-else")
    other = service_spec(echo(), config, replicas=1, created="2026-12-02T00:00:00Z", generation="g")
    await backend.swarm.create_service(other)
    assert await backend.functions.list_functions("openfaas-fn") == []
    with pytest.raises(FunctionNotFoundError):
        await backend.functions.status("openfaas-fn", "echo")
    await backend.publisher.refresh()
    assert backend.published("echo") == []


async def test_a_task_that_becomes_healthy_later_is_published_then(backend: Backend) -> None:
    first = IPv4Address("10.70.0.2")
    backend.probe.unhealthy.add(first)
    deploying = asyncio.create_task(backend.functions.deploy(echo()))
    while first not in backend.probe.asked:
        await asyncio.sleep(0.01)
    assert backend.published("echo") == []
    backend.probe.unhealthy.clear()
    status = await deploying
    assert status.available_replicas == 1
    assert backend.published("echo") == [str(first)]


async def test_logs_come_from_the_service_with_the_task_as_instance(backend: Backend) -> None:
    await backend.functions.deploy(echo())
    service = backend.swarm.services_by_name["openfaas-fn_echo"]
    at = datetime(2026, 12, 2, tzinfo=UTC)
    backend.swarm.logs_of[service.id] = [
        TaskLogLine("task1", LogLine(at, "one")),
        TaskLogLine("task2", LogLine(at, "two")),
    ]
    request = LogRequest.parse({"name": "echo", "instance": "task2"})
    got = [m.to_json() async for m in backend.functions.logs(request)]
    assert got == [
        {
            "name": "echo",
            "namespace": "openfaas-fn",
            "instance": "task2",
            "timestamp": "2026-12-02T00:00:00Z",
            "text": "two",
        }
    ]
    with pytest.raises(FunctionNotFoundError):
        [m async for m in backend.functions.logs(LogRequest.parse({"name": "nope"}))]


async def test_usage_sums_the_running_tasks_containers(backend: Backend) -> None:
    await backend.functions.deploy(echo(labels={"com.openfaas.scale.min": "2"}))
    containers = [t.container_id for t in await backend.swarm.tasks(list(backend.swarm.tasks_of))]
    backend.swarm.usage_of = {containers[0]: ContainerUsage(100.0, 1000.0), containers[1]: ContainerUsage(50.0, 24.0)}
    usage = await backend.functions.usage("openfaas-fn", "echo")
    assert (usage.cpu, usage.total_memory_bytes) == (150.0, 1024.0)


async def test_a_functions_domain_and_path_are_published_held_and_freed(backend: Backend) -> None:
    routes = {"com.pyfaasd.domain": "echo.example.com", "com.pyfaasd.path": "/echo"}
    await backend.functions.deploy(echo(annotations=routes))
    routes_file = backend.hosts.with_name("routes")
    published = {(str(r.kind), r.value, r.function) for r in read_routes(routes_file).routes}
    assert published == {("domain", "echo.example.com", "echo.openfaas-fn"), ("path", "/echo", "echo.openfaas-fn")}

    other = FunctionDeployment.parse(
        {"service": "other", "image": "pyfaasd/fn-echo-http", "annotations": {"com.pyfaasd.domain": "echo.example.com"}}
    )
    with pytest.raises(RouteConflictError, match=r"echo\.example\.com is already routed to function echo\.openfaas-fn"):
        await backend.functions.deploy(other)
    assert set(backend.swarm.services_by_name) == {"openfaas-fn_echo"}  # nothing made

    await backend.functions.delete("openfaas-fn", "echo")
    assert list(read_routes(routes_file).routes) == []
    await backend.functions.deploy(other)  # the domain is free again
