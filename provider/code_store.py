"""Code bundles: the code of code functions, stored by content hash under ``<state>/code``.

A bundle arrives as the raw bytes of one ``.py`` file, a ``.zip`` or a ``.tar.gz`` (told apart by their first
bytes, never by a name). It is unpacked once into ``<state>/code/<hex>/files`` and mounted read-only at
``/home/app/function`` into the containers of every function that names it (annotation ``com.pyfaasd.code``).

Unpacking trusts nothing in the archive: an entry whose path is absolute or climbs out with ``..``, a link, a
device or a FIFO is refused with the entry named; so is a bundle over the size, file-count or unpacked-size
limits (the unpacked size is counted while extracting, not read from headers a zip bomb can fake). A bundle is
unpacked into a temporary directory and renamed into place, so a failure or a crash leaves nothing behind and a
stored bundle is always whole. An archive whose root holds a single directory and nothing else is taken from
inside that directory (``zip -r fn.zip fn/`` works as the user means it).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Final

from provider.errors import CodeBundleInvalidError, CodeBundleTooLargeError, CodeNotFoundError

DIGEST_PREFIX: Final = "sha256:"
FILES_DIR: Final = "files"
META_FILE: Final = "bundle.json"
DIR_MODE: Final = 0o755  # read by the function's non-root user through the read-only mount
FILE_MODE: Final = 0o644
_ZIP_MAGIC: Final = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC: Final = b"\x1f\x8b"
_COPY_CHUNK: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class CodeLimits:
    """How much one bundle may hold (``PYFAASD_CODE_MAX_BYTES`` and friends)."""

    max_bytes: int = 64 << 20  # the upload itself
    max_files: int = 10_000
    max_unpacked_bytes: int = 256 << 20


@dataclass(frozen=True, slots=True)
class Bundle:
    """A stored bundle: what ``/system/code`` answers, and where its files are on this host."""

    digest: str
    size: int
    files: tuple[str, ...]
    created: datetime
    path: Path  # the directory mounted at /home/app/function

    def to_json(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            "size": self.size,
            "files": list(self.files),
            "created": self.created.isoformat().replace("+00:00", "Z"),
        }


def check_digest(value: str) -> str:
    """``sha256:<64 hex>`` in lower case, or :class:`CodeBundleInvalidError` naming the value."""
    text = value.strip()
    hexpart = text.removeprefix(DIGEST_PREFIX)
    if not text.startswith(DIGEST_PREFIX) or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise CodeBundleInvalidError(f"code digest {value!r} is not sha256:<64 lower-case hex digits>")
    return text


class CodeStore:
    """Bundles under ``root``: ``<hex>/files/...`` and ``<hex>/bundle.json``, written once, never changed."""

    def __init__(self, root: Path, limits: CodeLimits | None = None) -> None:
        self.root = root
        self.limits = limits or CodeLimits()

    def _dir(self, digest: str) -> Path:
        return self.root / check_digest(digest).removeprefix(DIGEST_PREFIX)

    def put(self, data: bytes, filename: str = "handler.py") -> tuple[Bundle, bool]:
        """Store ``data``; the bundle, and whether it is new. Blocking: call it in a thread."""
        if len(data) > self.limits.max_bytes:
            raise CodeBundleTooLargeError(
                f"code bundle of {len(data)} bytes is over the limit of {self.limits.max_bytes} bytes "
                "(PYFAASD_CODE_MAX_BYTES)"
            )
        if not data:
            raise CodeBundleInvalidError("code bundle is empty")
        digest = DIGEST_PREFIX + hashlib.sha256(data).hexdigest()
        final = self._dir(digest)
        if (final / META_FILE).is_file():
            return self.get(digest), False
        self.root.mkdir(parents=True, exist_ok=True)
        work = self.root / f".tmp-{os.getpid()}-{digest[7:23]}-{os.urandom(4).hex()}"
        try:
            files_dir = work / FILES_DIR
            files_dir.mkdir(parents=True, mode=DIR_MODE)
            _Unpacker(files_dir, self.limits).unpack(data, filename)
            _hoist_single_directory(files_dir)
            listed = tuple(sorted(p.relative_to(files_dir).as_posix() for p in files_dir.rglob("*") if p.is_file()))
            meta = {"digest": digest, "size": len(data), "files": list(listed), "created": _now().isoformat()}
            (work / META_FILE).write_text(json.dumps(meta))
            for path in (work, *work.rglob("*")):
                path.chmod(DIR_MODE if path.is_dir() else FILE_MODE)
            try:
                work.rename(final)
            except OSError:  # stored meanwhile by a concurrent upload of the same bytes
                if not (final / META_FILE).is_file():
                    raise
                return self.get(digest), False
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self.get(digest), True

    def get(self, digest: str) -> Bundle:
        directory = self._dir(digest)
        try:
            meta = json.loads((directory / META_FILE).read_text())
        except FileNotFoundError:
            raise CodeNotFoundError(f"code bundle {digest} is not stored (upload it with POST /system/code)") from None
        return Bundle(
            digest=meta["digest"],
            size=int(meta["size"]),
            files=tuple(meta["files"]),
            created=datetime.fromisoformat(meta["created"]),
            path=directory / FILES_DIR,
        )

    def exists(self, digest: str) -> bool:
        return (self._dir(digest) / META_FILE).is_file()

    def list(self) -> list[Bundle]:
        bundles = []
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(self.root.iterdir()):
                if not entry.name.startswith(".") and (entry / META_FILE).is_file():
                    bundles.append(self.get(DIGEST_PREFIX + entry.name))
        return sorted(bundles, key=lambda b: b.created)

    def delete(self, digest: str) -> None:
        directory = self._dir(digest)
        if not (directory / META_FILE).is_file():
            raise CodeNotFoundError(f"code bundle {digest} is not stored")
        # Rename first, so a reader never sees a half-removed bundle.
        doomed = self.root / f".del-{directory.name}-{os.urandom(4).hex()}"
        directory.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def remove_leftovers(self) -> None:
        """Temporary directories of uploads a crash interrupted (called at start-up)."""
        with contextlib.suppress(FileNotFoundError):
            for entry in self.root.iterdir():
                if entry.name.startswith((".tmp-", ".del-")):
                    shutil.rmtree(entry, ignore_errors=True)


class _Unpacker:
    """Writes the entries of one upload under ``dest``, refusing anything unsafe and counting as it goes."""

    def __init__(self, dest: Path, limits: CodeLimits) -> None:
        self.dest = dest
        self.limits = limits
        self.count = 0
        self.unpacked = 0

    def unpack(self, data: bytes, filename: str) -> None:
        if data.startswith(_ZIP_MAGIC):
            self._zip(data)
        elif data.startswith(_GZIP_MAGIC):
            self._tar(data)
        else:
            self._single(data, filename)
        if self.count == 0:
            raise CodeBundleInvalidError("code bundle holds no files")

    def _single(self, data: bytes, filename: str) -> None:
        name = PurePosixPath(filename)
        if len(name.parts) != 1 or name.suffix != ".py" or name.name.startswith("."):
            raise CodeBundleInvalidError(
                f"filename {filename!r} must be a plain .py file name such as handler.py "
                "(or send a .zip or .tar.gz archive)"
            )
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise CodeBundleInvalidError(
                f"{filename}: not UTF-8 text, nor a .zip or .tar.gz archive (the first bytes tell them apart)"
            ) from None
        self._write(filename, io.BytesIO(data))

    def _zip(self, data: bytes) -> None:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile as e:
            raise CodeBundleInvalidError(f"code bundle is not a readable zip archive: {e}") from None
        with archive:
            for info in archive.infolist():
                mode = info.external_attr >> 16
                kind = stat.S_IFMT(mode) if mode else 0
                if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                    raise CodeBundleInvalidError(f"zip entry {info.filename!r}: {_kind_name(kind)} are not allowed")
                if info.is_dir():
                    self._mkdir(info.filename)
                    continue
                try:
                    with archive.open(info) as source:
                        self._write(info.filename, source)
                except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as e:
                    if isinstance(e, CodeBundleInvalidError | CodeBundleTooLargeError):
                        raise
                    raise CodeBundleInvalidError(f"zip entry {info.filename!r} cannot be read: {e}") from None

    def _tar(self, data: bytes) -> None:
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                for member in archive:
                    self._tar_member(archive, member)
        except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise CodeBundleInvalidError(f"code bundle is not a readable .tar.gz archive: {e}") from None

    def _tar_member(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        if member.isdir():
            self._mkdir(member.name)
        elif member.isreg():
            source = archive.extractfile(member)
            if source is None:  # pragma: no cover - a regular member always has data
                raise CodeBundleInvalidError(f"tar entry {member.name!r} cannot be read")
            self._write(member.name, source)
        elif member.issym() or member.islnk():
            raise CodeBundleInvalidError(f"tar entry {member.name!r}: links are not allowed")
        else:
            raise CodeBundleInvalidError(
                f"tar entry {member.name!r}: devices, FIFOs and other special files are not allowed"
            )

    def _target(self, name: str) -> Path:
        path = PurePosixPath(name)
        if not name or path.is_absolute() or name.startswith("\\") or ":" in path.parts[0]:
            raise CodeBundleInvalidError(f"entry {name!r}: absolute paths are not allowed")
        parts = [part for part in path.parts if part not in ("", ".")]
        if ".." in parts:
            raise CodeBundleInvalidError(f"entry {name!r}: paths that leave the bundle ('..') are not allowed")
        if not parts:
            raise CodeBundleInvalidError(f"entry {name!r}: an empty path")
        target = self.dest.joinpath(*parts)
        # Belt and braces: nothing written so far is a link, but check where the path really lands.
        if not target.resolve().is_relative_to(self.dest.resolve()):
            raise CodeBundleInvalidError(f"entry {name!r}: leaves the bundle")
        return target

    def _mkdir(self, name: str) -> None:
        try:
            self._target(name).mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        except (FileExistsError, NotADirectoryError):
            raise CodeBundleInvalidError(f"entry {name!r} is both a file and a directory") from None

    def _write(self, name: str, source: IO[bytes]) -> None:
        target = self._target(name)
        self.count += 1
        if self.count > self.limits.max_files:
            raise CodeBundleTooLargeError(
                f"code bundle holds more than {self.limits.max_files} files (PYFAASD_CODE_MAX_FILES)"
            )
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            out = target.open("xb")
        except FileExistsError:
            raise CodeBundleInvalidError(f"entry {name!r} appears twice, or is both a file and a directory") from None
        except NotADirectoryError:
            raise CodeBundleInvalidError(f"entry {name!r} is inside something that is a file") from None
        with out:
            for chunk in iter(lambda: source.read(_COPY_CHUNK), b""):
                self.unpacked += len(chunk)
                if self.unpacked > self.limits.max_unpacked_bytes:
                    raise CodeBundleTooLargeError(
                        f"code bundle unpacks to more than {self.limits.max_unpacked_bytes} bytes "
                        f"(at entry {name!r}; PYFAASD_CODE_MAX_UNPACKED_BYTES)"
                    )
                out.write(chunk)


def _hoist_single_directory(files_dir: Path) -> None:
    """An archive of one folder (``fn/handler.py``...) becomes that folder's content."""
    entries = list(files_dir.iterdir())
    if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
        return
    inner = entries[0]
    staging = files_dir.with_name(files_dir.name + ".hoist")
    inner.rename(staging)
    files_dir.rmdir()
    staging.rename(files_dir)


def _kind_name(kind: int) -> str:
    return {
        stat.S_IFLNK: "links",
        stat.S_IFCHR: "character devices",
        stat.S_IFBLK: "block devices",
        stat.S_IFIFO: "FIFOs",
        stat.S_IFSOCK: "sockets",
    }.get(kind, "special files")


def _now() -> datetime:
    return datetime.now(UTC)
