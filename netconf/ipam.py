"""IP address allocation that survives restarts.

The store is one small JSON file per bridge (``<state>/ipam/<bridge>.json``)::

    {"version": 1, "subnet": "10.62.0.0/16", "last": "10.62.0.7",
     "allocations": {"10.62.0.2": "<owner>", ...}}

Every change takes an exclusive ``flock`` on a lock file beside the store, then replaces the store atomically
(write a temp file, fsync, rename), so a crash leaves either the old or the new version and two processes
never hand out the same address. Reads need no lock: they see one version or the other.

Addresses are handed out round-robin after the last one given, like CNI's host-local: an address that was just
released is reused as late as possible, so stale neighbour entries or hosts-file lines do not point at a new
container. The network, bridge (first host) and broadcast addresses are never handed out.

Speed: the free-address search runs over a ``bytearray`` with one byte per address (``bytearray.find`` is a
C loop), and the parsed store is kept in memory while the file's (inode, size, mtime, ctime) is unchanged, so an
allocation in a nearly full /16 costs one search and one write of the file, not a parse and a Python scan of
65,536 addresses.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from netconf.errors import (
    AddressInvalidError,
    ConfigError,
    IpamStateError,
    OwnerInvalidError,
    SubnetChangedError,
    SubnetFullError,
)

STORE_VERSION = 1

_FREE = 0
_USED = 1

# (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) of the store as we last read or wrote it.
_StatKey = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True, order=True)
class Allocation:
    """One address and the owner it was handed to (a container name or id)."""

    ip: IPv4Address
    owner: str


class _State:
    """The store in memory: both directions of the mapping plus the usage bitmap."""

    __slots__ = ("by_ip", "by_owner", "last", "used")

    def __init__(self, size: int, last: int) -> None:
        self.by_ip: dict[str, str] = {}  # address text -> owner, written as is
        self.by_owner: dict[str, str] = {}  # owner -> address text
        self.used = bytearray(size)  # one byte per offset in the subnet, _USED when not available
        self.used[0] = self.used[1] = self.used[size - 1] = _USED  # network, bridge, broadcast
        self.last = last  # offset of the address handed out last


class Ipam:
    """Allocate, release, list and reconcile addresses of one subnet, persisted at ``path``.

    Thread-safe and safe across processes. All methods do blocking file I/O: async callers run them in a
    worker thread (``netconf.Network`` does).
    """

    def __init__(self, path: Path, subnet: IPv4Network) -> None:
        if subnet.prefixlen > 30:
            raise ConfigError(f"subnet {subnet} has no room for containers (the prefix must be /30 or shorter)")
        self._path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._subnet = subnet
        self._base = int(subnet.network_address)
        self._size = subnet.num_addresses
        self._mutex = threading.Lock()
        self._cache: tuple[_StatKey, _State] | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def subnet(self) -> IPv4Network:
        return self._subnet

    @property
    def capacity(self) -> int:
        """How many addresses can be handed out (all but network, bridge and broadcast)."""
        return self._size - 3

    def allocate(self, owner: str) -> IPv4Address:
        """Hand ``owner`` an address; an owner that already has one gets the same one back."""
        _check_owner(owner)
        with self._transaction(write=True) as (state, commit):
            known = state.by_owner.get(owner)
            if known is not None:
                return IPv4Address(known)
            offset = state.used.find(_FREE, state.last + 1)
            if offset < 0:
                offset = state.used.find(_FREE)
            if offset < 0:
                raise SubnetFullError(
                    f"subnet {self._subnet} is full: all {self.capacity} addresses are allocated "
                    f"(release some, or reconcile against the containers that exist)"
                )
            ip = self._text(offset)
            state.used[offset] = _USED
            state.by_ip[ip] = owner
            state.by_owner[owner] = ip
            state.last = offset
            commit()
            return IPv4Address(ip)

    def release(self, ip: IPv4Address) -> str | None:
        """Free ``ip``; returns its former owner, or None if it was not allocated."""
        offset = self._offset(ip)
        with self._transaction(write=True) as (state, commit):
            owner = state.by_ip.pop(str(ip), None)
            if owner is None:
                return None
            del state.by_owner[owner]
            state.used[offset] = _FREE
            commit()
            return owner

    def release_owner(self, owner: str) -> IPv4Address | None:
        """Free the address of ``owner``; returns it, or None if the owner had none."""
        with self._transaction(write=True) as (state, commit):
            ip = state.by_owner.pop(owner, None)
            if ip is None:
                return None
            del state.by_ip[ip]
            state.used[self._offset(IPv4Address(ip))] = _FREE
            commit()
            return IPv4Address(ip)

    def lookup(self, owner: str) -> IPv4Address | None:
        """The address of ``owner``, or None."""
        with self._transaction(write=False) as (state, _):
            ip = state.by_owner.get(owner)
            return None if ip is None else IPv4Address(ip)

    def allocations(self) -> list[Allocation]:
        """Every allocation, ordered by address."""
        with self._transaction(write=False) as (state, _):
            return sorted(Allocation(IPv4Address(ip), owner) for ip, owner in state.by_ip.items())

    def reconcile(self, owners: Iterable[str]) -> list[Allocation]:
        """Free every address whose owner is not in ``owners`` (the containers that exist); returns what was freed."""
        alive = set(owners)
        with self._transaction(write=True) as (state, commit):
            stale = [(ip, owner) for ip, owner in state.by_ip.items() if owner not in alive]
            for ip, owner in stale:
                del state.by_ip[ip]
                del state.by_owner[owner]
                state.used[self._offset(IPv4Address(ip))] = _FREE
            if stale:
                commit()
            return sorted(Allocation(IPv4Address(ip), owner) for ip, owner in stale)

    def clear(self) -> None:
        """Forget every allocation and remove the store from disk (``down``)."""
        with self._mutex:
            self._cache = None
            for path in (self._path, self._lock_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            with contextlib.suppress(OSError):
                self._path.parent.rmdir()  # only when empty

    # -- internals --------------------------------------------------------------------------------------

    def _offset(self, ip: IPv4Address) -> int:
        if ip not in self._subnet:
            raise AddressInvalidError(f"{ip} is not in subnet {self._subnet}")
        offset = int(ip) - self._base
        if offset in (0, 1, self._size - 1):
            raise AddressInvalidError(f"{ip} is the network, bridge or broadcast address of {self._subnet}")
        return offset

    def _text(self, offset: int) -> str:
        return socket.inet_ntoa((self._base + offset).to_bytes(4, "big"))

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[tuple[_State, _Commit]]:
        """Lock, load (from cache when unchanged), yield the state and a ``commit`` callable.

        ``commit()`` persists the state when the block ends without error; an error drops the cached state,
        which may have been changed half-way.
        """
        commit = _Commit()
        # Readers need no file lock: the store is only ever replaced by rename, so a read sees one version.
        lock = self._file_lock() if write else contextlib.nullcontext()
        with self._mutex, lock:
            state = self._load()
            try:
                yield state, commit
                if commit.requested:
                    self._save(state)
            except BaseException:
                self._cache = None
                raise

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        try:
            self._path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise IpamStateError(f"cannot open the allocation lock {self._lock_path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _load(self) -> _State:
        try:
            with open(self._path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                if self._cache is not None and self._cache[0] == key:
                    return self._cache[1]
                raw = f.read()
        except FileNotFoundError:
            self._cache = None
            return _State(self._size, last=1)
        except OSError as e:
            raise IpamStateError(f"cannot read the allocation store {self._path}: {e.strerror}") from e
        state = self._parse(raw)
        self._cache = (key, state)
        return state

    def _parse(self, raw: bytes) -> _State:
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise IpamStateError(f"allocation store {self._path} is not valid JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("version") != STORE_VERSION:
            raise IpamStateError(f"allocation store {self._path} has an unknown format (want version {STORE_VERSION})")
        if doc.get("subnet") != str(self._subnet):
            raise SubnetChangedError(
                f"allocation store {self._path} is for subnet {doc.get('subnet')}, not {self._subnet}: "
                "run `python -m netconf down` with the old subnet before changing it"
            )
        allocations = doc.get("allocations")
        if not isinstance(allocations, dict):
            raise IpamStateError(f"allocation store {self._path}: 'allocations' is not an object")
        state = _State(self._size, last=self._parse_last(doc.get("last")))
        for ip, owner in allocations.items():
            offset = self._parse_offset(ip)
            if not isinstance(owner, str) or not owner or owner in state.by_owner or state.used[offset]:
                raise IpamStateError(f"allocation store {self._path}: bad or duplicate entry {ip!r}: {owner!r}")
            state.used[offset] = _USED
            state.by_ip[ip] = owner
            state.by_owner[owner] = ip
        return state

    def _parse_offset(self, text: Any) -> int:
        """Offset of a stored address; rejects anything but a canonical dotted quad in the usable range."""
        try:
            packed = socket.inet_aton(text)
        except (OSError, TypeError) as e:
            raise IpamStateError(f"allocation store {self._path}: {text!r} is not an IPv4 address") from e
        offset = int.from_bytes(packed, "big") - self._base
        if socket.inet_ntoa(packed) != text or not 1 < offset < self._size - 1:
            raise IpamStateError(f"allocation store {self._path}: {text!r} is not a usable address of {self._subnet}")
        return offset

    def _parse_last(self, text: Any) -> int:
        if text is None:
            return 1
        try:
            return self._parse_offset(text)
        except IpamStateError:
            return 1  # only a hint for round-robin; a bad value is harmless

    def _save(self, state: _State) -> None:
        last = None if state.last <= 1 else self._text(state.last)
        doc = {"version": STORE_VERSION, "subnet": str(self._subnet), "last": last, "allocations": state.by_ip}
        data = json.dumps(doc, separators=(",", ":")).encode()
        directory = self._path.parent
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self._path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, self._path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            _fsync_dir(directory)
            st = os.stat(self._path)
        except OSError as e:
            raise IpamStateError(f"cannot write the allocation store {self._path}: {e.strerror}") from e
        self._cache = ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), state)


class _Commit:
    """Called inside a transaction to ask for the state to be written when the block ends."""

    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> None:
        self.requested = True


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner.strip():
        raise OwnerInvalidError(f"owner must be a non-empty string, not {owner!r}")


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; some file systems refuse fsync on a directory, which is fine."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EROFS):
            raise
    finally:
        os.close(fd)
