"""Deploying code with no image build: upload the bundle, find the runtime, deploy onto it.

``pyfaasd deploy PATH --name NAME`` and the code functions of a stack file (``handler:`` with a runtime
``lang:``) both come here: the bundle goes to ``POST /system/code`` (stored once by its digest), the runtime's
image is looked up in ``GET /system/runtimes``, and the function is deployed as usual with the annotation
``com.pyfaasd.code`` naming the digest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

from provider.code_functions import ANNOTATION_CODE
from pyfaasd.bundle import BundleError, bundle_from_path
from pyfaasd.gateway_client import Response, StatusError, ndjson, send
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


def prepare(
    gateway: str, credentials: Credentials | None, path: Path, runtime: str, out: Callable[[str], None] = print
) -> CodeRef:
    """Upload ``path``, find ``runtime``'s image and install the bundle's requirements there (pip's output to
    ``out`` as it comes); transport failures are ``OSError``."""
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
    digest = str(stored["digest"])
    if "requirements.txt" in stored.get("files", []):
        install_requirements(gateway, credentials, digest, image, out)
    return CodeRef(image, digest, len(stored.get("files", [])), int(stored.get("size", 0)))


def install_requirements(
    gateway: str, credentials: Credentials | None, digest: str, image: str, out: Callable[[str], None]
) -> None:
    """Have the provider install the bundle's requirements.txt for the runtime, showing pip as it goes."""
    url = f"{gateway}/system/code/{digest}/dependencies"
    try:
        for item in ndjson("POST", url, credentials, body={"image": image}, timeout_s=UPLOAD_TIMEOUT_S):
            if "line" in item:
                out(f"  pip: {item['line']}")
            elif "error" in item:
                raise CodeDeployError(str(item["error"]))
            elif item.get("status") == "cached":
                out("Requirements: installed already for this runtime.")
            elif item.get("status") == "installed":
                out("Requirements: installed.")
    except StatusError as e:
        raise CodeDeployError(f"requirements refused: {e}") from None


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
