"""The handlers' operations (``provider/operations.py``) for the docker backend: the orchestration core and the
secret store, as they are."""

from __future__ import annotations

from collections.abc import AsyncIterator

from provider.code_functions import RuntimeImage
from provider.core import Core
from provider.logs import LogMessage, LogRequest, read_logs, select
from provider.models import FunctionDeployment, FunctionStatus, FunctionUsage
from provider.orchestrator import Orchestrator
from provider.secrets import SecretStore


class DockerFunctions:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._orchestrator: Orchestrator = core.orchestrator

    async def list_functions(self, namespace: str) -> list[FunctionStatus]:
        return self._orchestrator.list_functions(namespace)

    async def status(self, namespace: str, name: str) -> FunctionStatus:
        return self._orchestrator.get(namespace, name).status()

    async def usage(self, namespace: str, name: str) -> FunctionUsage:
        return await self._orchestrator.usage(namespace, name)

    async def deploy(self, spec: FunctionDeployment) -> FunctionStatus:
        return await self._orchestrator.deploy(spec)

    async def update(self, spec: FunctionDeployment) -> FunctionStatus:
        return await self._orchestrator.update(spec)

    async def delete(self, namespace: str, name: str) -> None:
        await self._orchestrator.delete(namespace, name)

    async def scale(self, namespace: str, name: str, replicas: int) -> FunctionStatus:
        return await self._orchestrator.scale(namespace, name, replicas)

    async def open_logs(self, request: LogRequest) -> AsyncIterator[LogMessage]:
        containers = select(await self._orchestrator.containers_of(request.namespace, request.name), request.instance)
        return read_logs(self._orchestrator.runtime, request, containers)

    async def code_usage(self) -> dict[str, list[str]]:
        return self._orchestrator.code_usage()

    async def runtimes(self) -> list[RuntimeImage]:
        return await self._core.code.runtimes()

    async def prune_dependencies(self) -> list[str]:
        return await self._orchestrator.prune_dependencies()

    async def volume_users(self) -> dict[str, list[str]]:
        return self._orchestrator.volume_users()

    def problem(self) -> str | None:
        return self._core.problem()


class DockerSecrets:
    def __init__(self, store: SecretStore, orchestrator: Orchestrator) -> None:
        self._store = store
        self._orchestrator = orchestrator

    async def names(self, namespace: str) -> list[str]:
        return self._store.list(namespace)

    async def create(self, namespace: str, name: str, value: bytes) -> None:
        await self._store.create(namespace, name, value)

    async def update(self, namespace: str, name: str, value: bytes) -> None:
        await self._store.update(namespace, name, value)

    async def delete(self, namespace: str, name: str) -> None:
        await self._store.delete(namespace, name, self._orchestrator.secret_users(namespace, name))
