"""The autoscaler's calls to the provider: the functions with their labels and desired counts, CPU use, scale.

All over the provider's faas-provider API with the gateway's own credentials (the gateway never talks to
Docker): ``GET /system/namespaces`` and ``GET /system/functions?namespace=`` for the functions,
``GET /system/function/<name>?namespace=&usage=1`` for the ``usage.cpu`` the provider reads from the engine's
container stats, ``POST /system/scale-function/<name>`` to scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from gateway.errors import ProviderError
from gateway.provider import ProviderClient


@dataclass(frozen=True, slots=True)
class FunctionView:
    """A deployed function as the autoscaler needs it."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    replicas: int  # the provider's desired count

    @property
    def key(self) -> str:
        return f"{self.name}.{self.namespace}"


class ProviderPlatform:
    """Implements the autoscaler's ``Platform`` over the provider's API."""

    def __init__(self, provider: ProviderClient, on_listed: Callable[[list[str]], None] | None = None) -> None:
        self._provider = provider
        self._on_listed = on_listed  # told every deployed function (name.namespace) each time they are listed

    async def functions(self) -> list[FunctionView]:
        status, namespaces, data = await self._provider.call_json("GET", "/system/namespaces")
        if status != 200 or not isinstance(namespaces, list):
            raise ProviderError(f"listing namespaces: the provider answered {status}: {_text(data)}")
        found: list[FunctionView] = []
        for namespace in namespaces:
            if not isinstance(namespace, str):
                continue
            status, items, data = await self._provider.call_json(
                "GET", f"/system/functions?namespace={quote(namespace, safe='')}"
            )
            if status == 400:  # the namespace went away meanwhile
                continue
            if status != 200 or not isinstance(items, list):
                raise ProviderError(f"listing functions in {namespace}: the provider answered {status}: {_text(data)}")
            found += [view for item in items if (view := _view(item, namespace)) is not None]
        if self._on_listed is not None:
            self._on_listed([view.key for view in found])
        return found

    async def cpu_millis(self, name: str, namespace: str) -> float | None:
        """Milli-CPUs all the function's replicas use now; None when the provider cannot tell."""
        path = f"/system/function/{quote(name, safe='')}?namespace={quote(namespace, safe='')}&usage=1"
        status, parsed, _data = await self._provider.call_json("GET", path)
        if status != 200 or not isinstance(parsed, dict):
            return None
        usage = parsed.get("usage")
        cpu = usage.get("cpu") if isinstance(usage, dict) else None
        return float(cpu) if isinstance(cpu, int | float) and not isinstance(cpu, bool) else None

    async def scale(self, name: str, namespace: str, replicas: int) -> None:
        path = f"/system/scale-function/{quote(name, safe='')}?namespace={quote(namespace, safe='')}"
        body = {"serviceName": name, "namespace": namespace, "replicas": replicas}
        status, _parsed, data = await self._provider.call_json("POST", path, body)
        if status not in (200, 202):
            raise ProviderError(
                f"scaling {name}.{namespace} to {replicas}: the provider answered {status}: {_text(data)}"
            )


def _view(item: Any, namespace: str) -> FunctionView | None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    labels = item.get("labels")
    replicas = item.get("replicas")
    own = item.get("namespace")
    return FunctionView(
        name=item["name"],
        namespace=own if isinstance(own, str) and own else namespace,
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        replicas=int(replicas) if isinstance(replicas, int | float) and not isinstance(replicas, bool) else 0,
    )


def _text(data: bytes) -> str:
    return data[:300].decode("utf-8", "replace").strip()
