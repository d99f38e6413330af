"""The swarm backend's operations and publisher (provider/swarm_functions.py) over an in-memory swarm: a service
gets as many tasks as it asks for, each with an overlay address; the probe says which answer healthy."""

from __future__ import annotations

import asyncio
import io
import itertools
import zipfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from netconf import NetConfig, read_hosts
from netconf.routes import read_routes
from provider.code_store import CodeStore
from provider.config import Backend as BackendSetting
from provider.config import ProviderConfig
from provider.errors import (
    CodeMissingError,
    CodeNotCarriedError,
    CodeTooLargeForSwarmError,
    FunctionExistsError,
    FunctionNotFoundError,
    FunctionStartError,
    ImageUnavailableError,
    InvalidRequestError,
    RouteConflictError,
    SecretExistsError,
    SecretInUseError,
    SecretMissingError,
    SecretNotFoundError,
    VolumeInUseError,
    VolumeMissingError,
)
from provider.logs import LogRequest
from provider.models import FunctionDeployment
from provider.namespaces import NamespaceStore
from provider.runtime import ContainerUsage, ImageInfo, LogLine, VolumeInfo
from provider.swarm_app import create_swarm_app
from provider.swarm_code import MAX_CONFIG_BYTES, MAX_FILES, SwarmCode
from provider.swarm_functions import Publisher, SwarmFunctions
from provider.swarm_runtime import ConfigInfo, SecretInfo, Service, Task, TaskLogLine
from provider.swarm_secrets import SwarmSecrets
from provider.swarm_spec import LABEL_NETWORK, service_spec
from provider.volumes import NfsShare, VolumeRequest, VolumeStore
from tests.unit.provider.fakes import AUTH, CREDENTIALS

RUNTIME = "pyfaasd/runtime-python"


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

    configs_by_id: dict[str, tuple[ConfigInfo, bytes]] = field(default_factory=dict)
    images: dict[str, ImageInfo] = field(
        default_factory=lambda: {
            RUNTIME: ImageInfo("sha256:r", {"com.pyfaasd.runtime": "python3.11"}, (RUNTIME,)),
            "pyfaasd/fn-echo-http": ImageInfo("sha256:e", {}, ("pyfaasd/fn-echo-http",)),
        }
    )

    async def configs(self, label: str) -> list[ConfigInfo]:
        key, value = label.split("=", 1)
        return [info for info, _ in self.configs_by_id.values() if info.labels.get(key) == value]

    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        assert all(info.name != name for info, _ in self.configs_by_id.values()), "Swarm refuses a taken name"
        assert 0 < len(data) < 500 * 1024, "Swarm refuses an empty config, or one of 500 KiB or more"
        n = next(self.ids)
        self.configs_by_id[f"k{n}"] = (ConfigInfo(f"k{n}", name, dict(labels)), data)
        return f"k{n}"

    async def remove_config(self, config_id: str) -> None:
        for service in self.services_by_name.values():
            refs = service.spec["TaskTemplate"]["ContainerSpec"].get("Configs") or []
            assert all(ref["ConfigID"] != config_id for ref in refs), "Swarm refuses to remove a config in use"
        self.configs_by_id.pop(config_id, None)

    def code(self, service: str) -> dict[str, bytes]:
        """What the service's tasks would find under /home/app/function."""
        container = self.services_by_name[service].spec["TaskTemplate"]["ContainerSpec"]
        found = {ref["File"]["Name"]: self.configs_by_id[ref["ConfigID"]][1] for ref in container.get("Configs") or []}
        for mount in container.get("Mounts") or []:
            if mount["Type"] == "bind" and mount["Source"] == "/dev/null":
                found[mount["Target"]] = b""
        return found

    async def image(self, image: str) -> ImageInfo | None:
        return self.images.get(image)

    async def images_labelled(self, label: str) -> list[ImageInfo]:
        return [i for i in self.images.values() if label in i.labels]

    volume_store: dict[str, VolumeInfo] = field(default_factory=dict)

    async def create_volume(self, name: str, options: Mapping[str, str], labels: Mapping[str, str]) -> VolumeInfo:
        assert name not in self.volume_store, "Docker refuses a taken volume name"
        info = VolumeInfo(name, "", dict(labels), dict(options), "2026-12-02T00:00:00Z")
        self.volume_store[name] = info
        return info

    async def volumes(self, label: str) -> list[VolumeInfo]:
        return [v for v in self.volume_store.values() if label in v.labels]

    async def remove_volume(self, name: str) -> None:
        self.volume_store.pop(name, None)

    def mounts(self, service: str) -> list[dict[str, Any]]:
        return list(self.services_by_name[service].spec["TaskTemplate"]["ContainerSpec"].get("Mounts") or [])

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
    volumes: VolumeStore
    code: CodeStore

    def published(self, name: str) -> list[str]:
        return [str(ip) for ip in read_hosts(self.hosts).lookup(f"{name}.openfaas-fn")]


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    config = ProviderConfig(net=NetConfig(state_dir=tmp_path), swarm_network="fnnet", ready_timeout_s=1.2)
    swarm, probe = MemorySwarm(), Probe()
    publisher = Publisher(config, swarm, probe)
    namespaces = NamespaceStore(tmp_path / "namespaces")
    secrets = SwarmSecrets(config, swarm, namespaces)
    volumes = VolumeStore(swarm, "fnnet", [tmp_path], owner_label=LABEL_NETWORK)
    store = CodeStore(tmp_path / "code")
    functions = SwarmFunctions(config, swarm, publisher, namespaces, secrets, volumes, SwarmCode(config, swarm, store))
    publisher.start()
    try:
        yield Backend(swarm, probe, publisher, functions, secrets, config.hosts_path, volumes, store)
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


async def test_a_scale_up_whose_tasks_do_not_serve_is_422_and_keeps_what_does(backend: Backend) -> None:
    await backend.functions.deploy(echo())
    backend.probe.unhealthy.update({IPv4Address("10.70.0.3"), IPv4Address("10.70.0.4")})  # the next tasks
    with pytest.raises(FunctionStartError, match="did not become ready"):
        await backend.functions.scale("openfaas-fn", "echo", 3)
    status = await backend.functions.status("openfaas-fn", "echo")
    assert status.replicas == 1  # back to what serves, as the docker backend does
    assert len(backend.published("echo")) == 1


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
    assert len(backend.published("echo")) == 3  # answered once they serve, as the docker backend does

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


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return out.getvalue()


def code_fn(digest: str, **body: object) -> FunctionDeployment:
    return FunctionDeployment.parse(
        {"service": "fn", "image": RUNTIME, "annotations": {"com.pyfaasd.code": digest}, **body}
    )


async def test_a_code_function_gets_its_bundle_as_swarm_configs(backend: Backend) -> None:
    bundle, _ = backend.code.put(
        _zip({"handler.py": b"def handle(r): return 'one'", "lib/__init__.py": b"", "lib/util.py": b"X = 1"}),
        "fn.zip",
    )
    await backend.functions.deploy(code_fn(bundle.digest))
    assert backend.swarm.code("openfaas-fn_fn") == {
        "/home/app/function/handler.py": b"def handle(r): return 'one'",
        "/home/app/function/lib/__init__.py": b"",  # an empty file: /dev/null, Swarm has no empty config
        "/home/app/function/lib/util.py": b"X = 1",
    }
    configs = [info for info, _ in backend.swarm.configs_by_id.values()]
    assert len(configs) == 2
    assert all(c.labels["com.pyfaasd.function"] == "fn" and c.labels[LABEL_NETWORK] == "fnnet" for c in configs)
    assert all(len(c.name) <= 64 and c.name.startswith("openfaas-fn_fn_") for c in configs)
    assert await backend.functions.code_usage() == {bundle.digest: ["fn.openfaas-fn"]}
    assert [r.image for r in await backend.functions.runtimes()] == [RUNTIME]


async def test_an_update_rolls_onto_new_configs_keeping_the_rollback_target_only(backend: Backend) -> None:
    digests = [backend.code.put(f"def handle(r): return '{n}'".encode())[0].digest for n in range(3)]
    await backend.functions.deploy(code_fn(digests[0]))
    first = set(backend.swarm.configs_by_id)
    await backend.functions.update(code_fn(digests[1]))
    assert backend.swarm.code("openfaas-fn_fn") == {"/home/app/function/handler.py": b"def handle(r): return '1'"}
    second = set(backend.swarm.configs_by_id) - first
    assert set(backend.swarm.configs_by_id) == first | second  # the replaced spec's config stays for a rollback
    await backend.functions.update(code_fn(digests[2]))
    assert first.isdisjoint(backend.swarm.configs_by_id)  # two updates back: gone
    assert second <= set(backend.swarm.configs_by_id)
    # the same bundle with another setting: no new config
    before = set(backend.swarm.configs_by_id)
    await backend.functions.update(code_fn(digests[2], envVars={"K": "v"}))
    assert set(backend.swarm.configs_by_id) <= before
    await backend.functions.delete("openfaas-fn", "fn")
    assert backend.swarm.configs_by_id == {}


async def test_what_swarm_cannot_carry_is_refused_before_anything_is_made(backend: Backend, tmp_path: Path) -> None:
    ok = backend.code.put(b"def handle(r): return 1")[0].digest
    with_requirements = backend.code.put(_zip({"handler.py": b"import x", "requirements.txt": b"requests\n"}))[0]
    too_big = backend.code.put(_zip({"handler.py": b"#" * (MAX_CONFIG_BYTES + 1)}))[0]
    too_many = backend.code.put(_zip({f"m{n}.py": b"x = 1" for n in range(MAX_FILES + 1)}))[0]
    dev = tmp_path / "dev"
    dev.mkdir()
    refusals: list[tuple[FunctionDeployment, type[Exception], str]] = [
        (code_fn(with_requirements.digest), CodeNotCarriedError, "cannot install requirements"),
        (code_fn(too_big.digest), CodeTooLargeForSwarmError, "over the 511999 bytes a Swarm config holds"),
        (code_fn(too_many.digest), CodeTooLargeForSwarmError, f"at most {MAX_FILES}"),
        (code_fn("sha256:" + "0" * 64), CodeMissingError, "is not stored"),
        (code_fn(ok, image="pyfaasd/fn-echo-http"), InvalidRequestError, "is not a runtime"),
        (code_fn(ok, image="nope"), ImageUnavailableError, "not present"),
        (echo(annotations={"com.pyfaasd.dev": str(dev)}), CodeNotCarriedError, "pyfaasd dev directory"),
    ]
    for spec, error, message in refusals:
        with pytest.raises(error, match=message):
            await backend.functions.deploy(spec)
    assert backend.swarm.services_by_name == {}
    assert backend.swarm.configs_by_id == {}
    # a deploy whose tasks never start leaves no service and no config
    backend.swarm.start_error = "no such image"
    with pytest.raises(FunctionStartError):
        await backend.functions.deploy(code_fn(ok))
    assert backend.swarm.services_by_name == {}
    assert backend.swarm.configs_by_id == {}


async def test_volumes_become_service_mounts_with_their_driver_options(backend: Backend, tmp_path: Path) -> None:
    await backend.volumes.create(VolumeRequest("data"))
    await backend.volumes.create(VolumeRequest("shared", host_path=tmp_path))
    await backend.volumes.create(VolumeRequest("share", nfs=NfsShare("nfs.example", "/exports", "nfsvers=4")))
    annotations = {
        "com.pyfaasd.volume.data": "/data",
        "com.pyfaasd.volume.shared": "/shared:ro",
        "com.pyfaasd.volume.share": "/nfs",
    }
    await backend.functions.deploy(echo(annotations=annotations))
    mounts = {m["Target"]: m for m in backend.swarm.mounts("openfaas-fn_echo")}
    assert mounts["/data"]["Source"] == "pyfaasd-fnnet-data"
    assert mounts["/data"]["VolumeOptions"]["DriverConfig"] == {"Name": "local"}
    assert mounts["/shared"]["ReadOnly"] is True
    assert mounts["/shared"]["VolumeOptions"]["DriverConfig"]["Options"] == {
        "type": "none",
        "o": "bind",
        "device": str(tmp_path),
    }
    assert mounts["/nfs"]["VolumeOptions"]["DriverConfig"]["Options"] == {
        "type": "nfs",
        "o": "addr=nfs.example,nfsvers=4",
        "device": ":/exports",
    }
    assert await backend.functions.volume_users() == {
        "data": ["echo.openfaas-fn"],
        "share": ["echo.openfaas-fn"],
        "shared": ["echo.openfaas-fn"],
    }
    with pytest.raises(VolumeInUseError, match=r"echo\.openfaas-fn"):
        await backend.volumes.delete("data", (await backend.functions.volume_users())["data"])
    # an update without the volume frees it
    await backend.functions.update(echo(annotations={"com.pyfaasd.volume.data": "/data"}))
    assert [m["Target"] for m in backend.swarm.mounts("openfaas-fn_echo")] == ["/data"]
    assert "shared" not in await backend.functions.volume_users()


async def test_a_missing_volume_is_refused_and_an_auto_volume_made_for_a_failed_deploy_goes(backend: Backend) -> None:
    with pytest.raises(VolumeMissingError, match="there is no volume nope"):
        await backend.functions.deploy(echo(annotations={"com.pyfaasd.volume.nope": "/data"}))
    with pytest.raises(InvalidRequestError, match="not a path a volume can be mounted at"):
        await backend.functions.deploy(echo(annotations={"com.pyfaasd.volume.auto": "/etc"}))
    assert backend.swarm.services_by_name == {}
    backend.swarm.start_error = "no such image"
    with pytest.raises(FunctionStartError):
        await backend.functions.deploy(echo(annotations={"com.pyfaasd.volume.auto": "/data"}))
    assert backend.swarm.services_by_name == {}
    assert backend.swarm.volume_store == {}  # the auto volume made for it went with it
    backend.swarm.start_error = ""
    await backend.functions.deploy(echo(annotations={"com.pyfaasd.volume.auto": "/data"}))
    [mount] = backend.swarm.mounts("openfaas-fn_echo")
    assert mount["Source"] == "pyfaasd-fnnet-auto-echo-openfaas-fn"
    assert mount["VolumeOptions"]["Labels"]["com.pyfaasd.volume.auto"] == "echo.openfaas-fn"
    await backend.functions.delete("openfaas-fn", "echo")
    assert [v.name for v in await backend.volumes.all()] == ["auto-echo-openfaas-fn"]  # kept, as with docker


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
    got = [m.to_json() async for m in await backend.functions.open_logs(request)]
    assert got == [
        {
            "name": "echo",
            "namespace": "openfaas-fn",
            "instance": "task2",
            "timestamp": "2026-12-02T00:00:00Z",
            "text": "two",
        }
    ]
    with pytest.raises(FunctionNotFoundError):  # before any line: the handler answers 404
        await backend.functions.open_logs(LogRequest.parse({"name": "nope"}))


async def test_usage_sums_the_running_tasks_containers(backend: Backend) -> None:
    await backend.functions.deploy(echo(labels={"com.openfaas.scale.min": "2"}))
    containers = [t.container_id for t in await backend.swarm.tasks(list(backend.swarm.tasks_of))]
    backend.swarm.usage_of = {containers[0]: ContainerUsage(100.0, 1000.0), containers[1]: ContainerUsage(50.0, 24.0)}
    usage = await backend.functions.usage("openfaas-fn", "echo")
    assert (usage.cpu, usage.total_memory_bytes) == (150.0, 1024.0)


async def test_the_swarm_app_serves_volumes_and_code_with_the_shared_handlers(
    backend: Backend, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    config = ProviderConfig(net=NetConfig(state_dir=tmp_path), swarm_network="fnnet", backend=BackendSetting.SWARM)
    app = create_swarm_app(
        config,
        CREDENTIALS,
        backend.functions,
        backend.secrets,
        NamespaceStore(tmp_path / "namespaces"),
        backend.volumes,
        backend.code,
    )
    client = await aiohttp_client(app)
    info = await (await client.get("/system/info", headers=AUTH)).json()
    assert info["orchestration"] == "swarm"
    assert (await client.get("/healthz")).status == 200

    made = await client.post("/system/volumes", json={"name": "data"}, headers=AUTH)
    assert (made.status, (await made.json())["type"]) == (201, "local")
    uploaded = await client.post("/system/code?filename=handler.py", data=b"def handle(e, c): return 1", headers=AUTH)
    assert uploaded.status == 201
    digest = (await uploaded.json())["digest"]
    runtimes = await (await client.get("/system/runtimes", headers=AUTH)).json()
    assert runtimes == [{"name": "python3.11", "image": RUNTIME, "mode": ""}]

    spec = {
        "service": "fn",
        "image": RUNTIME,
        "annotations": {"com.pyfaasd.code": digest, "com.pyfaasd.volume.data": "/data"},
    }
    assert (await client.post("/system/functions", json=spec, headers=AUTH)).status == 202
    volumes = await (await client.get("/system/volumes", headers=AUTH)).json()
    assert [(v["name"], v["functions"]) for v in volumes] == [("data", ["fn.openfaas-fn"])]
    bundles = await (await client.get("/system/code", headers=AUTH)).json()
    assert [(b["digest"], b["functions"]) for b in bundles] == [(digest, ["fn.openfaas-fn"])]
    in_use = await client.delete(f"/system/code/{digest}", headers=AUTH)
    assert in_use.status == 409
    assert "fn.openfaas-fn" in await in_use.text()
    refused = await client.post(f"/system/code/{digest}/dependencies", json={"image": RUNTIME}, headers=AUTH)
    assert refused.status == 400
    assert "cannot install requirements" in await refused.text()
    pruned = await client.post("/system/code/prune", headers=AUTH)
    assert await pruned.json() == {"removedDependencySets": []}

    assert (await client.delete("/system/functions", json={"functionName": "fn"}, headers=AUTH)).status == 200
    assert backend.swarm.configs_by_id == {}
    assert (await client.delete(f"/system/code/{digest}", headers=AUTH)).status == 200
    assert (await client.delete("/system/volumes", json={"name": "data"}, headers=AUTH)).status == 200


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
