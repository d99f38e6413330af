"""Function namespaces: ``openfaas-fn`` always exists; others are created through /system/namespace/.

Kept as one JSON file per namespace in ``<state>/namespaces/`` (name, labels, annotations). Functions live in
Docker; a namespace is only a name that functions and secrets may use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provider.errors import NamespaceExistsError, NamespaceInvalidError, NamespaceNotFoundError
from provider.models import DEFAULT_NAMESPACE, check_dns_label


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


class NamespaceStore:
    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def _path(self, name: str) -> Path:
        return self._dir / f"{check_dns_label('namespace', name)}.json"

    def names(self) -> list[str]:
        """All namespaces, ``openfaas-fn`` first (faasd's order)."""
        try:
            others = sorted(p.stem for p in self._dir.glob("*.json") if p.stem != DEFAULT_NAMESPACE)
        except FileNotFoundError:
            others = []
        return [DEFAULT_NAMESPACE, *others]

    def exists(self, name: str) -> bool:
        return name == DEFAULT_NAMESPACE or self._path(name).is_file()

    def require(self, name: str) -> str:
        """The namespace of a function request; 400 when it does not exist."""
        if not self.exists(name):
            raise NamespaceInvalidError(f"namespace {name} does not exist (create it with faas-cli namespace create)")
        return name

    def get(self, name: str) -> Namespace:
        if name == DEFAULT_NAMESPACE:
            stored = self._read(name)
            return stored or Namespace(name, labels={"openfaas": "1"})
        stored = self._read(name)
        if stored is None:
            raise NamespaceNotFoundError(f"namespace {name} not found")
        return stored

    def create(self, namespace: Namespace) -> None:
        if self.exists(namespace.name):
            raise NamespaceExistsError(f"namespace {namespace.name} already exists")
        self._write(namespace)

    def update(self, namespace: Namespace) -> None:
        if not self.exists(namespace.name):
            raise NamespaceNotFoundError(f"namespace {namespace.name} not found")
        self._write(namespace)

    def delete(self, name: str) -> None:
        if name == DEFAULT_NAMESPACE:
            raise NamespaceInvalidError(f"namespace {DEFAULT_NAMESPACE} cannot be deleted")
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            raise NamespaceNotFoundError(f"namespace {name} not found") from None

    def _read(self, name: str) -> Namespace | None:
        try:
            data = json.loads(self._path(name).read_text())
        except FileNotFoundError:
            return None
        return Namespace(name=name, labels=data.get("labels") or {}, annotations=data.get("annotations") or {})

    def _write(self, namespace: Namespace) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._path(namespace.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(namespace.to_json()))
        os.replace(tmp, path)
