"""Deploying code with no image build: upload the bundle, find the runtime, deploy onto it.

``pyfaasd deploy PATH --name NAME`` and the code functions of a stack file (``handler:`` with a runtime
``lang:``) both come here: the bundle goes to ``POST /system/code`` (stored once by its digest), the runtime's
image is looked up in ``GET /system/runtimes``, and the function is deployed as usual with the annotation
``com.pyfaasd.code`` naming the digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

from provider.code_functions import ANNOTATION_CODE
from pyfaasd.bundle import BundleError, bundle_from_path
from pyfaasd.gateway_client import Response, send
from servicekit.auth import Credentials

DEFAULT_RUNTIME: Final = "python3.11"
# faas-cli template names that mean the Python runtime (their handlers run unchanged in python mode).
RUNTIME_LANGS: Final = {"python3": "python3.11", "python3-http": "python3.11", "python3.11": "python3.11"}
UPLOAD_TIMEOUT_S: Final = 300.0

__all__ = ["ANNOTATION_CODE", "DEFAULT_RUNTIME", "RUNTIME_LANGS", "CodeDeployError", "CodeRef", "prepare"]


class CodeDeployError(Exception):
    """The code could not be uploaded, or the runtime is unknown; the message says which and why."""


@dataclass(frozen=True, slots=True)
class CodeRef:
    """What a code function's deployment names: the runtime's image and the bundle's digest."""

    image: str
    digest: str
    files: int
    size: int


def prepare(gateway: str, credentials: Credentials | None, path: Path, runtime: str) -> CodeRef:
    """Upload ``path`` and find ``runtime``'s image; transport failures are ``OSError``."""
    try:
        upload = bundle_from_path(path)
    except BundleError as e:
        raise CodeDeployError(str(e)) from None
    reply = send(
        "POST",
        f"{gateway}/system/code?filename={quote(upload.filename)}",
        credentials,
        data=upload.data,
        timeout_s=UPLOAD_TIMEOUT_S,
    )
    if reply.status not in (200, 201):
        raise CodeDeployError(f"upload of {path} refused: {_problem(reply)}")
    stored = reply.json()
    image = runtime_image(gateway, credentials, runtime)
    return CodeRef(image, str(stored["digest"]), len(stored.get("files", [])), int(stored.get("size", 0)))


def runtime_image(gateway: str, credentials: Credentials | None, runtime: str) -> str:
    reply = send("GET", f"{gateway}/system/runtimes", credentials)
    if reply.status != 200:
        raise CodeDeployError(f"cannot list the runtimes: {_problem(reply)}")
    runtimes = reply.json()
    for entry in runtimes:
        if entry.get("name") == runtime:
            return str(entry["image"])
    known = ", ".join(sorted({str(e.get("name")) for e in runtimes})) or "none"
    raise CodeDeployError(f"no runtime {runtime!r} on this gateway (it has: {known})")


def _problem(reply: Response) -> str:
    return f"{reply.status} {reply.reason}: {reply.body.strip()}"
