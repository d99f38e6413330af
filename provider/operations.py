"""What the HTTP handlers need of a backend: the function and secret operations behind the faas-provider API.

One handler layer (``provider/handlers/``) serves both backends: it parses and checks the request, calls one of
these operations and shapes the answer. ``provider/docker_operations.py`` implements them over the orchestrator
and the secret store of the docker backend, ``provider/swarm_functions.py`` and ``provider/swarm_secrets.py``
over Swarm services and secrets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from provider.code_functions import RuntimeImage
from provider.logs import LogMessage, LogRequest
from provider.models import FunctionDeployment, FunctionStatus, FunctionUsage


class FunctionOperations(Protocol):
    async def list_functions(self, namespace: str) -> list[FunctionStatus]: ...

    async def status(self, namespace: str, name: str) -> FunctionStatus:
        """The function's status: 400 for a missing namespace, 404 for a missing function."""
        ...

    async def usage(self, namespace: str, name: str) -> FunctionUsage: ...

    async def deploy(self, spec: FunctionDeployment) -> FunctionStatus: ...

    async def update(self, spec: FunctionDeployment) -> FunctionStatus: ...

    async def delete(self, namespace: str, name: str) -> None: ...

    async def scale(self, namespace: str, name: str, replicas: int) -> FunctionStatus: ...

    async def open_logs(self, request: LogRequest) -> AsyncIterator[LogMessage]:
        """The function's log lines; raises (404 and the like) before the answer starts, not while iterating."""
        ...

    async def code_usage(self) -> dict[str, list[str]]:
        """The functions (``name.namespace``) using each code bundle, by digest."""
        ...

    async def runtimes(self) -> list[RuntimeImage]:
        """The runtime library code functions deploy onto (``GET /system/runtimes``)."""
        ...

    async def prune_dependencies(self) -> list[str]:
        """Remove the dependency sets no function uses; their keys."""
        ...

    async def volume_users(self) -> dict[str, list[str]]:
        """The functions (``name.namespace``) mounting each volume, deploys in flight included."""
        ...

    def problem(self) -> str | None:
        """Why the backend cannot keep functions running right now (``/healthz`` answers 503 with it)."""
        ...


class SecretOperations(Protocol):
    async def names(self, namespace: str) -> list[str]: ...

    async def create(self, namespace: str, name: str, value: bytes) -> None: ...

    async def update(self, namespace: str, name: str, value: bytes) -> None: ...

    async def delete(self, namespace: str, name: str) -> None:
        """404 when missing, 409 naming the functions that mount it."""
        ...
