"""The bytes ``pyfaasd deploy PATH`` uploads to ``POST /system/code``, from a file, a folder or an archive.

- a ``.py`` file goes as it is, with its name;
- a ``.zip``, ``.tar.gz`` or ``.tgz`` goes as it is (the provider tells them apart by their first bytes);
- a folder is packed into a ``.tar.gz`` the same way every time (sorted entries, no times, owners or modes
  beyond the executable bit), so unchanged code gives the same digest and is neither stored nor rolled again.
  ``__pycache__``, ``*.pyc`` and hidden files and folders (``.git``, ``.venv``) are left out.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")


class BundleError(Exception):
    """The path cannot be deployed as code; the message names it."""


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    filename: str  # sent as ?filename=; names the file of a single-file bundle


def bundle_from_path(path: Path) -> Upload:
    if path.is_dir():
        return Upload(pack_directory(path), "handler.py")
    if not path.is_file():
        raise BundleError(f"{path}: no such file or directory")
    name = path.name
    if name.endswith(".py") or name.endswith(ARCHIVE_SUFFIXES):
        return Upload(path.read_bytes(), name if name.endswith(".py") else "handler.py")
    raise BundleError(f"{path}: not a .py file, a folder, or a .zip/.tar.gz archive")


def pack_directory(directory: Path) -> bytes:
    """A reproducible ``.tar.gz`` of the deployable files under ``directory``."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and _wanted(p.relative_to(directory)))
    if not files:
        raise BundleError(f"{directory}: no files to deploy")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in files:
            info = tarfile.TarInfo(path.relative_to(directory).as_posix())
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _wanted(relative: Path) -> bool:
    parts = relative.parts
    if any(part.startswith(".") or part == "__pycache__" for part in parts):
        return False
    return relative.suffix != ".pyc"
