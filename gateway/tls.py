"""The HTTPS listener's certificates: a default one and per-domain ones chosen by SNI, reloaded on SIGHUP.

Files (docs/gateway.md, "TLS"): ``PYFAASD_TLS_CERT`` + ``PYFAASD_TLS_KEY`` (the default certificate, for clients
that send no SNI or a name with no certificate of its own) and ``PYFAASD_TLS_DIR`` holding, for each domain,
``<domain>/fullchain.pem`` + ``<domain>/privkey.pem`` (certbot's ``/etc/letsencrypt/live`` layout) or
``<domain>.crt`` + ``<domain>.key``. Without a default, the first domain's certificate (by name) is it.

The listener keeps one :class:`ssl.SSLContext` for its life. Its ``sni_callback`` moves each new connection onto
the context of the name it asked for. :meth:`Certificates.reload` builds new contexts from the files and swaps
them in, and loads the default certificate into the listener's context again: connections already open keep
the certificate they shook hands with; the next handshake gets the new files. A reload whose files do not load
(say certbot is halfway through writing them) is logged and the certificates in use are kept.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("gateway.tls")


class TlsError(Exception):
    """A certificate or key that cannot be loaded; the message names the file."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    cert: Path
    key: Path


def domain_pairs(directory: Path) -> dict[str, KeyPair]:
    """The per-domain certificate files in ``directory``: certbot's layout and ``<domain>.crt``/``.key``."""
    found: dict[str, KeyPair] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError as e:
        raise TlsError(f"cannot read the certificate directory {directory}: {e.strerror}") from e
    for entry in entries:
        if entry.is_dir() and (entry / "fullchain.pem").is_file() and (entry / "privkey.pem").is_file():
            found[entry.name.lower()] = KeyPair(entry / "fullchain.pem", entry / "privkey.pem")
        elif entry.suffix == ".crt" and entry.with_suffix(".key").is_file():
            found.setdefault(entry.stem.lower(), KeyPair(entry, entry.with_suffix(".key")))
    return found


def server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def _load(context: ssl.SSLContext, pair: KeyPair) -> None:
    try:
        context.load_cert_chain(pair.cert, pair.key)
    except (OSError, ssl.SSLError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise TlsError(f"cannot load certificate {pair.cert} with key {pair.key}: {reason}") from e


class Certificates:
    """The contexts of one HTTPS listener (one per serving process)."""

    def __init__(self, cert: Path | None, key: Path | None, directory: Path | None) -> None:
        self._default = KeyPair(cert, key) if cert is not None and key is not None else None
        self._directory = directory
        self.context = server_context()
        self.context.sni_callback = self._choose
        self._by_domain: dict[str, ssl.SSLContext] = {}
        self.reloads = 0
        self._build()

    @property
    def domains(self) -> list[str]:
        return sorted(self._by_domain)

    def _build(self) -> None:
        """Load every file; TlsError (and nothing changed) if one does not load."""
        pairs = domain_pairs(self._directory) if self._directory is not None else {}
        contexts: dict[str, ssl.SSLContext] = {}
        for domain, pair in pairs.items():
            context = server_context()
            _load(context, pair)
            contexts[domain] = context
        default = self._default or (next(iter(pairs.values())) if pairs else None)
        if default is None:
            raise TlsError(f"no certificate: {self._directory} holds none and no default certificate is set")
        probe = server_context()
        _load(probe, default)  # check it before it replaces the listener's certificate
        _load(self.context, default)
        self._by_domain = contexts

    def reload(self) -> bool:
        """Load the files again (SIGHUP); True when they loaded, else the certificates in use are kept."""
        try:
            self._build()
        except TlsError as e:
            log.error("tls_reload_failed", error=str(e))
            return False
        self.reloads += 1
        log.info("tls_reloaded", domains=self.domains, default=str(self._default.cert) if self._default else None)
        return True

    def _choose(self, connection: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext) -> None:
        if server_name:
            context = self._by_domain.get(server_name.lower())
            if context is not None:
                connection.context = context
