"""Settings of every pyfaasd daemon: one set of value parsers, and one table mechanism for env vars and flags.

Parsers take the setting's name and its text, and raise :class:`SettingError` naming the setting; they never
fall back silently (of-watchdog's ``getInt`` turning junk into 0 is the anti-pattern). The rules, the same for
the watchdog's of-watchdog variables and the daemons' ``PYFAASD_*`` ones:

- durations follow faas-provider: a bare number is seconds, otherwise a Go-style duration such as ``60s``,
  ``1m30s`` or ``250ms``; negative, ``inf`` and ``nan`` are refused;
- booleans are ``1``, ``t``, ``true``, ``yes``, ``on`` and ``0``, ``f``, ``false``, ``no``, ``off`` in any case
  (every spelling Go's ``strconv.ParseBool`` takes, which of-watchdog uses, and the daemons' ``yes``/``on``);
- whole numbers are decimal, within the bounds the setting gives.

A daemon lists its settings as :class:`Setting` rows (env name, flag, default, help, parser):
:func:`add_flags` makes the argparse flags from the rows, :func:`with_flags` lays the given flags over the
environment (a flag wins), and :meth:`Setting.read` parses one value, falling back to the row's default when
the variable is unset or blank.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import AddressValueError, IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

from servicekit import defaults
from servicekit.cpus import available_cpus
from servicekit.log import parse_level
from servicekit.swarm import Backend

if TYPE_CHECKING:
    import argparse  # (only the daemons' command lines need it: the watchdog reads its environment)

T = TypeVar("T")
E = TypeVar("E", bound=enum.StrEnum)

Parser = Callable[[str, str], T]
"""Parses the text of the setting named by the first argument; raises SettingError naming it."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TRUE = frozenset({"1", "t", "true", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "no", "off"})


class SettingError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


# -- value parsers ------------------------------------------------------------------------------------------


def parse_duration(name: str, value: str) -> float:
    """Seconds from ``30``, ``1.5``, ``60s``, ``1m30s``, ``250ms``; negative, inf and nan are refused."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise SettingError(f"{name}: {value!r} is not a duration (like 30, 60s, 1m30s or 250ms)") from None
    if not 0 <= seconds < float("inf"):  # also false for nan
        raise SettingError(f"{name}: {value!r} must be a finite duration of zero or more")
    return seconds


def parse_positive_duration(name: str, value: str) -> float:
    """A duration above zero (see :func:`parse_duration`)."""
    seconds = parse_duration(name, value)
    if seconds <= 0:
        raise SettingError(f"{name}: {value!r} must be a finite duration above zero")
    return seconds


def parse_bool(name: str, value: str) -> bool:
    """``1 t true yes on`` or ``0 f false no off``, in any case."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingError(f"{name}: {value!r} is not a boolean (true or false)")


def parse_int(name: str, value: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise SettingError(f"{name}: {value!r} is not a whole number") from None
    if minimum is not None and number < minimum:
        raise SettingError(f"{name}: {number} is below the minimum of {minimum}")
    if maximum is not None and number > maximum:
        raise SettingError(f"{name}: {number} is above the maximum of {maximum}")
    return number


def whole_number(minimum: int | None = None, maximum: int | None = None) -> Parser[int]:
    """A parser of whole numbers within ``minimum`` and ``maximum`` (each bound included)."""

    def parse(name: str, value: str) -> int:
        return parse_int(name, value, minimum=minimum, maximum=maximum)

    return parse


def workers_count(maximum: int) -> Parser[int]:
    """A number of serving processes, 1 to ``maximum``, or ``auto``: the CPUs this process may use (servicekit.cpus)."""

    def parse(name: str, value: str) -> int:
        if value.strip().lower() == "auto":
            return min(available_cpus(), maximum)
        return parse_int(name, value, minimum=1, maximum=maximum)

    return parse


def optional_whole_number(minimum: int | None = None, maximum: int | None = None) -> Parser[int | None]:
    """A parser of whole numbers within the bounds, or None for an empty value (a default computed by the reader)."""

    def parse(name: str, value: str) -> int | None:
        return parse_int(name, value, minimum=minimum, maximum=maximum) if value.strip() else None

    return parse


class Choice(Generic[E]):
    """A parser of one of a string enum's values (any case); the flag made from it offers only those."""

    def __init__(self, kind: type[E]) -> None:
        self.kind = kind
        self.values = tuple(member.value for member in kind)

    def __call__(self, name: str, value: str) -> E:
        try:
            return self.kind(value.strip().lower())
        except ValueError:
            raise SettingError(f"{name}: {value!r} is not one of {', '.join(self.values)}") from None


def parse_log_level(name: str, value: str) -> str:
    """``debug``, ``info``, ``warning`` or ``error`` (any case), as the lower-case name."""
    try:
        parse_level(value)
    except ValueError as exc:
        raise SettingError(f"{name}: {exc}") from None
    return value.strip().lower()


def parse_text(name: str, value: str) -> str:
    """The text as given (for settings checked where they are used, such as the bridge name)."""
    del name
    return value


def parse_path(name: str, value: str) -> Path:
    if not value.strip():
        raise SettingError(f"{name}: an empty path")
    return Path(value)


def parse_optional_path(name: str, value: str) -> Path | None:
    """A path, or None for an empty value (the row's default is then computed by its reader)."""
    return parse_path(name, value) if value.strip() else None


def parse_listen_address(name: str, value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT`` means 0.0.0.0) as an IPv4 host and a port; IPv6 is refused (IPv4 only)."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep:
        raise SettingError(f"{name}: {value!r} is not an address like 127.0.0.1:8081")
    host = host or "0.0.0.0"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        IPv4Address(host)
    except AddressValueError:
        raise SettingError(f"{name}: {host!r} is not an IPv4 address (pyfaasd listens on IPv4 only)") from None
    port = parse_int(name, port_text, minimum=0, maximum=65535)
    return host, port


def _reach(host: str, port: int) -> str:
    """The URL of a server listening at ``host:port``, from this host."""
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"


@dataclass(frozen=True, slots=True)
class HttpUrl:
    """An upstream's base URL split for the HTTP client: ``http://host:port[/base]``."""

    url: str
    host: str
    port: int
    base_path: str  # "" or "/prefix" without a trailing slash


def parse_http_url(name: str, value: str) -> HttpUrl:
    """An http:// URL with a host (port 80 if none); ``localhost`` is dialled as 127.0.0.1 (IPv4 only)."""
    parts = urlsplit(value.strip())
    if parts.scheme != "http" or not parts.hostname:
        raise SettingError(f"{name}: {value!r} must be an http:// URL (http://HOST[:PORT][/PATH])")
    try:
        port = parts.port or 80
    except ValueError:
        raise SettingError(f"{name}: {value!r} has an invalid port") from None
    host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    if ":" in host:
        raise SettingError(f"{name}: {value!r} is IPv6; pyfaasd dials IPv4 only")
    if parts.query or parts.fragment:
        raise SettingError(f"{name}: {value!r} must not have a query or fragment")
    base = parts.path.rstrip("/")
    return HttpUrl(url=f"http://{host}:{port}{base}", host=host, port=port, base_path=base)


# -- the table: env var, flag, default, help, parser ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting(Generic[T]):
    """One setting of a daemon: an environment variable and, if ``flag`` is given, a flag of the same meaning."""

    env: str
    flag: str | None
    default: str  # the text parsed when the variable is unset or blank ("" for a computed default)
    help: str
    parse: Parser[T]
    unset: str = ""  # what an empty default stands for, in help and docs (e.g. "<state dir>/hosts")

    def read(self, env: Mapping[str, str]) -> T:
        """This setting's value in ``env`` (the default when unset or blank); SettingError names the variable."""
        text = env.get(self.env, "")
        return self.parse(self.env, text if text.strip() else self.default)

    def with_flag(self, flag: str | None) -> Setting[T]:
        """The same setting under another flag (or none), for a command that names it differently."""
        return replace(self, flag=flag)

    def local_url(self: Setting[tuple[str, int]], env: Mapping[str, str]) -> str:
        """For a listen address ``HOST:PORT``: the ``http://`` URL a client on this host uses to reach it.

        A wildcard listen address (``0.0.0.0``, or ``:PORT``) is reached at 127.0.0.1.
        """
        return _reach(*self.read(env))

    @property
    def shown_default(self) -> str:
        return self.default or self.unset or "—"


def add_flags(parser: argparse.ArgumentParser, settings: Iterable[Setting[Any]]) -> None:
    """One flag per row that has one; the flag's value lands under the env var's name (see :func:`with_flags`).

    Boolean settings get ``--x`` and ``--no-x``; a :class:`Choice` setting offers only its values.
    """
    import argparse

    for setting in settings:
        if setting.flag is None:
            continue
        help_text = f"{setting.help} [{setting.env}, default {setting.shown_default}]"
        if setting.parse is parse_bool:
            parser.add_argument(setting.flag, dest=setting.env, action=argparse.BooleanOptionalAction, help=help_text)
        elif isinstance(setting.parse, Choice):
            parser.add_argument(setting.flag, dest=setting.env, choices=setting.parse.values, help=help_text)
        else:
            parser.add_argument(setting.flag, dest=setting.env, metavar="VALUE", help=help_text)


def with_flags(env: Mapping[str, str], args: argparse.Namespace, settings: Iterable[Setting[Any]]) -> dict[str, str]:
    """``env`` with the flags given in ``args`` laid over it: a flag wins over its variable."""
    merged = dict(env)
    for setting in settings:
        value = getattr(args, setting.env, None) if setting.flag is not None else None
        if value is None:
            continue
        merged[setting.env] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return merged


# -- rows more than one daemon reads ---------------------------------------------------------------------------

STATE_DIR: Setting[Path] = Setting(
    "PYFAASD_STATE_DIR",
    "--state-dir",
    str(defaults.STATE_DIR),
    "state dir (hosts file, secrets, credentials, IP allocations, desired replicas)",
    parse_path,
)
BACKEND: Setting[Backend] = Setting(
    "PYFAASD_BACKEND", "--backend", Backend.DOCKER.value, "what runs functions: docker or swarm", Choice(Backend)
)
LOG_LEVEL: Setting[str] = Setting(
    "PYFAASD_LOG_LEVEL", "--log-level", "info", "debug, info, warning or error", parse_log_level
)
FUNCTION_PORT: Setting[int] = Setting(
    "PYFAASD_FUNCTION_PORT",
    "--function-port",
    str(defaults.FUNCTION_PORT),
    "port of the watchdog in every replica",
    whole_number(1, 65535),
)

# A daemon's limits on its HTTP clients (servicekit/client_limits.py): the gateway's and the provider's listeners.
HEADER_TIMEOUT: Setting[float] = Setting(
    "PYFAASD_HEADER_TIMEOUT",
    "--header-timeout",
    f"{defaults.HEADER_TIMEOUT_S:g}s",
    "longest a client may take to send a request's head, from its first byte (the connection is closed after)",
    parse_positive_duration,
)
IDLE_TIMEOUT: Setting[float] = Setting(
    "PYFAASD_IDLE_TIMEOUT",
    "--idle-timeout",
    f"{defaults.IDLE_TIMEOUT_S:g}s",
    "longest a client connection may stay open sending nothing, after it opened or after a response",
    parse_positive_duration,
)
MAX_CONNECTIONS: Setting[int | None] = Setting(
    "PYFAASD_MAX_CONNECTIONS",
    "--max-connections",
    "",
    "most client connections a serving process keeps open; one more gets 503 and is closed",
    optional_whole_number(1),
    unset="three quarters of the open-file limit",
)
MAX_REPLICAS: Setting[int] = Setting(
    "PYFAASD_MAX_REPLICAS", "--max-replicas", "20", "most replicas of one function", whole_number(1, 1000)
)
