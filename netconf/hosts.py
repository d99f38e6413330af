"""The hosts file: the discovery contract between the provider (writer) and the gateway (reader).

Format (ARCHITECTURE.md, "The hosts file"): plain ``/etc/hosts`` syntax, ``IPv4<TAB>name [alias...]``::

    # pyfaasd hosts: written by the provider, do not edit
    127.0.0.1\tlocalhost
    10.62.0.1\tgateway provider
    10.62.0.7\tfiglet.openfaas-fn figlet
    10.62.0.9\tfiglet.openfaas-fn figlet
    10.62.0.8\tnodeinfo.dev
    # end crc32=<CRC-32 of the lines above, 8 hex digits>

One line per ready replica, ``<name>.<namespace>`` plus the bare ``<name>`` in the default namespace; several
lines with one name are several replicas. The last line is an end marker with the CRC-32 of everything before
it, so a reader can tell a complete file from a torn one.

Writing (``write_hosts``) keeps the inode, because the file is bind-mounted read-only as ``/etc/hosts`` into
every function container: open without ``O_TRUNC``, take an exclusive ``flock``, write the whole content at
offset 0 in one ``write``, then ``ftruncate`` to the new length if it is shorter. Unchanged content is not
written at all.

What a concurrent reader sees:

* ``read_hosts`` takes a shared ``flock`` for its read, so it sees the old or the new content, never a mix.
  The gateway uses it.
* A reader that does not lock (glibc inside a container, ``cat``) can, for the instant of a rewrite, see the new
  content followed by the tail of a longer old one (before the ``ftruncate``), or a page-wise mix (Linux does
  not serialise buffered reads against writes). ``parse_hosts`` copes: it ignores everything after the end
  marker, skips malformed and unterminated lines, and reports ``complete=False`` when the marker is missing or
  its checksum does not match, so a lock-free caller can read again. Inside containers a lookup that races a
  rewrite may miss a name once; the next lookup sees the new file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address
from pathlib import Path

from netconf.errors import HostsFileError
from servicekit.defaults import DEFAULT_NAMESPACE as DEFAULT_NAMESPACE  # re-exported for the gateway

HEADER = "# pyfaasd hosts: written by the provider, do not edit"
END_MARKER = "# end crc32="
FILE_MODE = 0o644

# A name or namespace may not contain whitespace or '#', or it would break the line format.
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_END = re.compile(r"^# end crc32=([0-9a-f]{8})$")


@dataclass(frozen=True, slots=True, order=True)
class Replica:
    """A ready replica of a function: one line of the hosts file."""

    name: str
    namespace: str
    ip: IPv4Address


@dataclass(frozen=True, slots=True)
class HostsTable:
    """What a hosts file says: each name (and alias) with its addresses in file order, without duplicates.

    ``complete`` is True when the end marker was found and its checksum matched.
    """

    entries: Mapping[str, tuple[IPv4Address, ...]]
    complete: bool

    def lookup(self, name: str) -> tuple[IPv4Address, ...]:
        return self.entries.get(name, ())


def render_hosts(bridge_ip: IPv4Address, replicas: Iterable[Replica]) -> str:
    """The whole file for these replicas, in a stable order (by namespace, name, address)."""
    lines = [HEADER, "127.0.0.1\tlocalhost", f"{bridge_ip}\tgateway provider"]
    for replica in sorted(set(replicas), key=lambda r: (r.namespace, r.name, int(r.ip))):
        _check_name("function name", replica.name)
        _check_name("namespace", replica.namespace)
        names = f"{replica.name}.{replica.namespace}"
        if replica.namespace == DEFAULT_NAMESPACE:
            names += f" {replica.name}"
        lines.append(f"{replica.ip}\t{names}")
    body = "".join(f"{line}\n" for line in lines)
    return f"{body}{END_MARKER}{zlib.crc32(body.encode()):08x}\n"


def write_hosts(path: Path, bridge_ip: IPv4Address, replicas: Iterable[Replica]) -> bool:
    """Rewrite the hosts file in place for these replicas; returns False when the content was already so."""
    return write_hosts_content(path, render_hosts(bridge_ip, replicas))


def write_hosts_content(path: Path, content: str) -> bool:
    """Replace the file's content in place (same inode) under an exclusive flock; False if unchanged."""
    data = content.encode()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as e:
        raise HostsFileError(f"cannot open hosts file {path}: {e.strerror}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)  # containers read it as an unprivileged user
        old_size = os.fstat(fd).st_size
        if old_size == len(data) and _pread_all(fd, old_size) == data:
            return False
        _pwrite_all(fd, data)
        if len(data) < old_size:
            os.ftruncate(fd, len(data))
        return True
    except OSError as e:
        raise HostsFileError(f"cannot write hosts file {path}: {e.strerror}") from e
    finally:
        os.close(fd)  # releases the lock


def read_hosts(path: Path) -> HostsTable:
    """Read and parse the hosts file under a shared flock (so never a half-written file); empty if missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return HostsTable(entries={}, complete=False)
    except OSError as e:
        raise HostsFileError(f"cannot open hosts file {path}: {e.strerror}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        data = _pread_all(fd, os.fstat(fd).st_size)
    except OSError as e:
        raise HostsFileError(f"cannot read hosts file {path}: {e.strerror}") from e
    finally:
        os.close(fd)
    return parse_hosts(data.decode(errors="replace"))


def parse_hosts(text: str) -> HostsTable:
    """Parse ``/etc/hosts`` text into name → addresses; tolerant of anything a torn or hand-edited file holds.

    Skips comments, blank lines, lines whose first field is not an IPv4 address, and a last line without its
    newline (it may be cut off). Stops at the end marker.
    """
    entries: dict[str, list[IPv4Address]] = {}
    complete = False
    offset = 0
    lines = text.split("\n")
    for line in lines[:-1]:  # the last piece has no newline: empty, or possibly cut off mid-line
        stripped = line.strip()
        marker = _END.match(stripped)
        if marker:
            complete = f"{zlib.crc32(text[:offset].encode()):08x}" == marker.group(1)
            break
        offset += len(line) + 1
        _parse_line(stripped, entries)
    return HostsTable(entries={name: tuple(ips) for name, ips in entries.items()}, complete=complete)


def _parse_line(line: str, entries: dict[str, list[IPv4Address]]) -> None:
    line = line.split("#", 1)[0]
    fields = line.split()
    if len(fields) < 2:
        return
    try:
        ip = IPv4Address(fields[0])
    except AddressValueError:
        return  # IPv6 or garbage: IPv4 only
    for name in fields[1:]:
        ips = entries.setdefault(name, [])
        if ip not in ips:
            ips.append(ip)


def _check_name(what: str, value: str) -> None:
    if not _NAME.match(value):
        raise HostsFileError(f"{what} {value!r} cannot go into the hosts file (letters, digits, '.', '_', '-')")


def _pread_all(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _pwrite_all(fd: int, data: bytes) -> None:
    """One ``pwrite`` of the whole content; the loop only continues after a (rare) short write."""
    offset = 0
    while offset < len(data):
        written = os.pwrite(fd, data[offset:], offset)
        if written == 0:
            raise OSError(errno.EIO, "short write")
        offset += written
