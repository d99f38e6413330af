"""The pool's slots on disk: ``<state>/pool/<slot>/``, one per pooled container, and the claim records.

A slot is made before its container and is bound into it, read-only, at four places::

    function/  -> /home/app/function       the code bundle, linked in when a function claims the container
    packages/  -> /home/app/packages       its dependency set, likewise
    secrets/   -> /var/openfaas/secrets    its secrets, hard links of <state>/secrets/<ns>/<name> (same inode:
                                           an update in place shows, as through a fresh replica's file bind)
    control/   -> /run/pyfaasd             load.json (the function's environment) and the FIFO ``wake``

and ``claim.json`` beside them, never mounted: the labels the replica would have had as a fresh container
(function, namespace, replica, generation, created, spec, the user's labels). Docker cannot change a
container's labels, so for a pooled replica the record is the part of its state Docker cannot hold; the
container's own label ``com.pyfaasd.pool.slot`` names the record, and ``provider/docker_runtime.py`` lays it
over the container's labels, so to the rest of the provider a claimed container is a function container like
any other. Writes are atomic (write, fsync, rename): a record is whole or absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

import structlog

from servicekit.pool_handover import FIFO_NAME, LOAD_FILE

log = structlog.get_logger("provider.pool")

CLAIM_FILE: Final = "claim.json"
PARTS: Final = ("function", "packages", "secrets", "control")
ROOT_MODE: Final = 0o700


class PoolSlots:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._claims: dict[str, dict[str, str]] = {}
        self._read_claims()

    def path(self, slot: str) -> Path:
        return self.root / slot

    # -- making and removing ---------------------------------------------------------------------------

    def make(self, slot: str) -> Path:
        """An empty slot with its FIFO; its parts readable by the function user through the mounts."""
        self.root.mkdir(mode=ROOT_MODE, parents=True, exist_ok=True)
        base = self.root / slot
        base.mkdir(mode=0o755)
        for part in PARTS:
            (base / part).mkdir(mode=0o755)
        os.mkfifo(base / "control" / FIFO_NAME, 0o644)
        return base

    def remove(self, slot: str) -> None:
        self._claims.pop(slot, None)
        shutil.rmtree(self.root / slot, ignore_errors=True)

    def slots(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return sorted(p.name for p in self.root.iterdir() if p.is_dir())
        return []

    # -- claims ----------------------------------------------------------------------------------------

    def labels_of(self, slot: str) -> Mapping[str, str] | None:
        """The labels a claimed slot's container stands for; None while unclaimed."""
        return self._claims.get(slot)

    def touched(self, slot: str) -> bool:
        """Whether a claim of the slot ever began (a record, even unreadable, or a load file): such a container
        must never be taken as idle."""
        base = self.root / slot
        return (base / CLAIM_FILE).exists() or (base / "control" / LOAD_FILE).exists()

    def loaded(self, slot: str) -> bool:
        """Whether the function was handed over (its load file written): a claim without one was interrupted."""
        return (self.root / slot / "control" / LOAD_FILE).is_file()

    def claim(self, slot: str, labels: Mapping[str, str]) -> None:
        _write_atomic(self.root / slot / CLAIM_FILE, json.dumps({"labels": dict(labels)}).encode())
        self._claims[slot] = dict(labels)

    def fill(self, slot: str, code: Path | None, packages: Path | None, secrets: Mapping[str, Path]) -> None:
        """Link the bundle, the dependency set and the secrets into the slot (copies across file systems)."""
        base = self.root / slot
        if code is not None:
            _link_tree(code, base / "function")
        if packages is not None:
            _link_tree(packages, base / "packages")
        for name, source in secrets.items():
            _link_file(source, base / "secrets" / name)

    def hand_over(self, slot: str, env: Iterable[str]) -> None:
        """Write the load file and poke the waiting watchdog (it also finds the file by itself within a second)."""
        pairs = dict(item.split("=", 1) for item in env)
        control = self.root / slot / "control"
        _write_atomic(control / LOAD_FILE, json.dumps({"env": pairs}).encode(), mode=0o644)
        try:
            fd = os.open(control / FIFO_NAME, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader (yet): it reads the file when it looks
            return
        try:
            os.write(fd, b"1")
        except OSError:
            pass
        finally:
            os.close(fd)

    def _read_claims(self) -> None:
        for slot in self.slots():
            try:
                data = json.loads((self.root / slot / CLAIM_FILE).read_bytes())
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                log.error("pool_claim_unreadable", slot=slot, error=str(e))
                continue
            labels = data.get("labels") if isinstance(data, dict) else None
            if isinstance(labels, dict):
                self._claims[slot] = {str(k): str(v) for k, v in labels.items()}


def _write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.rename(path)


def _link_file(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
        stat = source.stat()
        with contextlib.suppress(PermissionError):
            os.chown(target, stat.st_uid, stat.st_gid)


def _link_tree(source: Path, target: Path) -> None:
    """Everything under ``source`` into the existing directory ``target``, files as hard links."""
    for entry in source.iterdir():
        destination = target / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry), destination)
        elif entry.is_dir():
            shutil.copytree(entry, destination, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(destination))


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
