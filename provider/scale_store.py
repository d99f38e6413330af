"""The desired replica count of each function, so a restart or a reboot brings back what was asked for.

Docker labels carry a function's spec, but a label cannot change after a container is created, and a
function scaled to zero (containers stopped on purpose) looks just like one whose containers stopped in a
reboot. This store says which is which: ``<state>/replicas/<namespace>/<name>`` holds the count as text. A
function with containers but no entry here is taken to want as many replicas as it has containers.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class ScaleStore:
    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def _path(self, namespace: str, name: str) -> Path:
        return self._dir / namespace / name

    def get(self, namespace: str, name: str) -> int | None:
        try:
            return int(self._path(namespace, name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def set(self, namespace: str, name: str, replicas: int) -> None:
        path = self._path(namespace, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(f"{replicas}\n")
        os.replace(tmp, path)

    def delete(self, namespace: str, name: str) -> None:
        path = self._path(namespace, name)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the namespace's last function: no empty directory stays behind
            path.parent.rmdir()
