"""Basic-auth credentials shared by the provider and the gateway (ARCHITECTURE.md, "Names and paths").

The two files ``basic-auth-user`` and ``basic-auth-password`` live in ``<state>/secrets/``; whitespace around
their content is ignored, as faas-provider does. The same credentials are what a client sends to the gateway,
what the gateway sends to the provider, and what ``faas-cli login`` stores.

Stdlib only: each HTTP side wraps :func:`check_authorization` in its own middleware and answers 401 with
:data:`CHALLENGE` as the ``WWW-Authenticate`` header and :data:`REJECTION` as the body.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

USER_FILE = "basic-auth-user"
PASSWORD_FILE = "basic-auth-password"  # noqa: S105 (a file name)
DEFAULT_USER = "admin"
CHALLENGE = 'Basic realm="Restricted"'
REJECTION = "invalid credentials"


class CredentialsError(Exception):
    """The credential files are missing, unreadable or empty."""


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str

    def __repr__(self) -> str:  # never print the password by accident
        return f"Credentials(user={self.user!r}, password=<hidden>)"

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value that carries these credentials."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


def secrets_dir(state_dir: Path) -> Path:
    return state_dir / "secrets"


def load_credentials(directory: Path) -> Credentials:
    """Read the two files from ``directory``; CredentialsError names the file that is wrong."""
    values = []
    for name in (USER_FILE, PASSWORD_FILE):
        path = directory / name
        try:
            value = path.read_text().strip()
        except OSError as e:
            raise CredentialsError(f"cannot read {path}: {e.strerror}") from e
        if not value:
            raise CredentialsError(f"{path} is empty")
        values.append(value)
    return Credentials(user=values[0], password=values[1])


def ensure_credentials(directory: Path, user: str = DEFAULT_USER) -> tuple[Credentials, bool]:
    """Load the credentials, creating them first (random password, files 0600) where absent.

    Returns the credentials and whether anything was created. Existing files are never overwritten.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = False
    for name, value in ((USER_FILE, user), (PASSWORD_FILE, secrets.token_urlsafe(24))):
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        created = True
    return load_credentials(directory), created


def check_authorization(header: str | None, expected: Credentials) -> bool:
    """Whether an ``Authorization`` header value carries ``expected``; both parts compared in constant time."""
    if not header:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    user_ok = hmac.compare_digest(user.encode(), expected.user.encode())
    password_ok = hmac.compare_digest(password.encode(), expected.password.encode())
    return user_ok and password_ok
