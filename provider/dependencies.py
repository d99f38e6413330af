"""Dependency sets: a code function's ``requirements.txt`` installed once per (runtime image, requirements).

A set lives in ``<state>/deps/<key>`` and is mounted read-only at ``/home/app/packages`` into every replica of
every function whose bundle has the same requirements on the same runtime image. It is installed by pip inside
a short-lived container of the runtime itself (``/opt/pyfaasd/tools/pip``), so compiled wheels match the
runtime's Python, not the host's. The container writes into a temporary directory that is renamed into place
only when pip succeeded: a failed install leaves nothing behind and answers 422 with pip's last lines.

Where pip looks: ``PYFAASD_PIP_INDEX_URL`` (else pip's default index) and ``PYFAASD_PIP_FIND_LINKS`` (local
directories, mounted read-only into the installer). With find-links and no index URL, the installer has no
network at all (``--no-index``); otherwise it is on Docker's default bridge to reach the index.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

from provider.errors import DependencyInstallError

log = structlog.get_logger("provider.dependencies")

REQUIREMENTS_FILE: Final = "requirements.txt"
PIP: Final = ("python3", "/opt/pyfaasd/tools/pip")
META_FILE: Final = ".pyfaasd-deps.json"
LABEL_INSTALLER: Final = "com.pyfaasd.installer"
TAIL_LINES: Final = 8  # of pip's output in a failed install's message
INSTALLER_TMP: Final = "/tmp"  # noqa: S108  (a tmpfs of the installer container, not the host's /tmp)


@dataclass(frozen=True, slots=True)
class PipSettings:
    index_url: str = ""
    find_links: tuple[Path, ...] = ()
    timeout_s: float = 600.0


@dataclass(frozen=True, slots=True)
class DependencySet:
    key: str
    path: Path
    installed: bool = False  # installed by this call (not found ready)


class OneShotRunner(Protocol):
    """Runs one container to its end (``provider/docker_runtime.py``)."""

    async def run_to_completion(
        self, name: str, config: dict[str, Any], timeout_s: float, on_line: Callable[[str], None]
    ) -> tuple[int, list[str]]:
        """The exit status and the output lines; the container is removed whatever happens."""
        ...


def requirements_of(bundle_path: Path) -> bytes | None:
    """The bundle's ``requirements.txt`` when it names anything (comments and blank lines do not count)."""
    path = bundle_path / REQUIREMENTS_FILE
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    meaningful = [line for line in text.decode(errors="replace").splitlines() if line.split("#", 1)[0].strip()]
    return text if meaningful else None


def set_key(runtime_image_id: str, requirements: bytes, pip: PipSettings) -> str:
    """Same runtime image, same requirements, same pip sources: same set."""
    digest = hashlib.sha256()
    for part in (runtime_image_id.encode(), requirements, pip.index_url.encode(), *map(_bytes, pip.find_links)):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:32]


def _bytes(path: Path) -> bytes:
    return str(path).encode()


@dataclass
class DependencySets:
    root: Path
    runner: OneShotRunner
    pip: PipSettings = field(default_factory=PipSettings)
    instance_labels: dict[str, str] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False)

    def path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return (self.root / key / META_FILE).is_file()

    async def ensure(
        self,
        runtime_image: str,
        runtime_image_id: str,
        requirements: bytes,
        on_line: Callable[[str], None] | None = None,
    ) -> DependencySet:
        """The set for these requirements on this runtime, installed now if it is not there yet.

        ``on_line`` gets pip's output as it comes (``installed`` is False when the set was there already).
        """
        key = set_key(runtime_image_id, requirements, self.pip)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if self.exists(key):
                return DependencySet(key, self.path(key), installed=False)
            await self._install(key, runtime_image, runtime_image_id, requirements, on_line)
        return DependencySet(key, self.path(key), installed=True)

    async def _install(
        self, key: str, image: str, image_id: str, requirements: bytes, on_line: Callable[[str], None] | None
    ) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        work = self.root / f".tmp-{key}-{os.urandom(4).hex()}"
        out, inputs = work / "out", work / "in"
        try:
            out.mkdir(parents=True)
            inputs.mkdir()
            (inputs / REQUIREMENTS_FILE).write_bytes(requirements)
            log.info("dependencies_installing", key=key, runtime=image)
            status, lines = await self.runner.run_to_completion(
                f"pyfaasd-pip-{key[:12]}-{os.urandom(3).hex()}",
                self._installer_config(image_id, out, inputs, key),
                self.pip.timeout_s,
                lambda line: _progress(key, line, on_line),
            )
            if status != 0:
                tail = "\n".join(line for line in lines if line.strip())
                tail = "\n".join(tail.splitlines()[-TAIL_LINES:])
                raise DependencyInstallError(
                    f"pip could not install requirements.txt (exit status {status}):\n{tail}".rstrip()
                )
            meta = {"key": key, "runtime": image, "image_id": image_id, "created": datetime.now(UTC).isoformat()}
            (out / META_FILE).write_text(json.dumps(meta))
            _readable(out)
            out.rename(self.root / key)
            log.info("dependencies_installed", key=key, runtime=image)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _installer_config(self, image_id: str, out: Path, inputs: Path, key: str) -> dict[str, Any]:
        args = [
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--progress-bar",
            "off",
            "--target",
            "/out",
            "--requirement",
            f"/in/{REQUIREMENTS_FILE}",
        ]
        binds = [f"{out}:/out:rw", f"{inputs}:/in:ro"]
        for index, directory in enumerate(self.pip.find_links):
            binds.append(f"{directory}:/find-links/{index}:ro")
            args += ["--find-links", f"/find-links/{index}"]
        offline = bool(self.pip.find_links) and not self.pip.index_url
        if offline:
            args.append("--no-index")
        elif self.pip.index_url:
            args += ["--index-url", self.pip.index_url]
        return {
            "Image": image_id,
            "Entrypoint": list(PIP),
            "Cmd": args,
            "User": "0:0",
            "WorkingDir": INSTALLER_TMP,
            "Env": [f"HOME={INSTALLER_TMP}", "PIP_ROOT_USER_ACTION=ignore"],
            "Labels": {**self.instance_labels, LABEL_INSTALLER: key},
            "HostConfig": {
                "Binds": binds,
                "NetworkMode": "none" if offline else "bridge",
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "ReadonlyRootfs": True,
                "Tmpfs": {INSTALLER_TMP: "rw,exec,size=1g"},
                "PidsLimit": 256,
                "AutoRemove": False,
            },
        }

    def keys(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and self.exists(p.name))
        return []

    def remove_unused(self, used: Iterable[str]) -> list[str]:
        """Remove every set not in ``used`` (``pyfaasd code prune``); the keys removed."""
        keep = set(used)
        removed = []
        for key in self.keys():
            if key not in keep:
                shutil.rmtree(self.root / key, ignore_errors=True)
                removed.append(key)
        return removed

    def remove_leftovers(self) -> None:
        """Temporary directories of installs a crash interrupted (called at start-up)."""
        with contextlib.suppress(FileNotFoundError):
            for entry in self.root.iterdir():
                if entry.name.startswith(".tmp-"):
                    shutil.rmtree(entry, ignore_errors=True)


def _progress(key: str, line: str, on_line: Callable[[str], None] | None) -> None:
    log.info("dependencies_pip", key=key, line=line)
    if on_line is not None:
        on_line(line)


def _readable(root: Path) -> None:
    """Everything readable by the function's (non-root) user through the read-only mount."""
    for path in (root, *root.rglob("*")):
        if path.is_symlink():
            continue
        executable = path.is_dir() or os.access(path, os.X_OK)
        path.chmod(0o755 if executable else 0o644)
