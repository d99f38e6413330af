"""``pyfaasd dev DIR --name NAME``: a function served from a live directory while you edit it.

The directory is mounted read-only into a replica on the runtime (no upload, no build); the runtime's watchdog
loads the handler again whenever a file changes (``function_reload``), so an edit answers within a second at
``/function/NAME``. The function's output is streamed to the terminal. Ctrl-C (or SIGTERM) removes the
function and the token file, and leaves nothing behind.

The provider mounts a host directory only for a caller that proves it can write into it as its owner: this
command writes a random token into ``DIR/.pyfaasd-dev`` and sends the same token (provider/code_functions.py).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from provider.code_functions import ANNOTATION_DEV, ANNOTATION_DEV_TOKEN, DEV_TOKEN_FILE
from pyfaasd.code_deploy import CodeDeployError, runtime_image
from pyfaasd.gateway_client import send
from servicekit.auth import Credentials
from servicekit.defaults import DEFAULT_NAMESPACE

Out = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DevFunction:
    directory: Path
    name: str
    runtime: str
    namespace: str = ""
    environment: Mapping[str, str] | None = None
    secrets: Sequence[str] = ()
    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None

    @property
    def qualified(self) -> str:
        return f"{self.name}.{self.namespace or DEFAULT_NAMESPACE}"

    def deployment(self, image: str, token: str) -> dict[str, object]:
        annotations = {**(self.annotations or {}), ANNOTATION_DEV: str(self.directory), ANNOTATION_DEV_TOKEN: token}
        body: dict[str, object] = {
            "service": self.name,
            "image": image,
            "envVars": {**(self.environment or {}), "function_reload": "true"},
            "annotations": annotations,
        }
        optional = {"namespace": self.namespace, "secrets": list(self.secrets), "labels": dict(self.labels or {})}
        body.update({k: v for k, v in optional.items() if v})
        return body


@contextlib.contextmanager
def _token_file(directory: Path) -> Iterator[str]:
    token = secrets.token_hex(24)
    path = directory / DEV_TOKEN_FILE
    path.write_text(token + "\n")
    path.chmod(0o600)
    try:
        yield token
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM end the session, even when started in the background (where SIGINT is ignored)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_dev(fn: DevFunction, gateway: str, credentials: Credentials | None, out: Out, err: Out) -> int:
    """Deploy, stream the logs until interrupted, remove; the exit status."""
    if not fn.directory.is_dir():
        err(f"pyfaasd dev: {fn.directory} is not a directory")
        return 2
    try:
        image = runtime_image(gateway, credentials, fn.runtime)
    except CodeDeployError as e:
        err(f"pyfaasd dev: {e}")
        return 1
    except OSError as e:
        err(f"pyfaasd dev: cannot reach the gateway at {gateway}: {getattr(e, 'reason', None) or e}")
        return 1
    with _signals_as_interrupt(), _token_file(fn.directory) as token:
        deployed = False
        try:
            reply = send("POST", f"{gateway}/system/functions", credentials, body=fn.deployment(image, token))
            if reply.status == 409:
                err(f"pyfaasd dev: a function {fn.qualified} exists already; pyfaasd dev makes its own: pick --name")
                return 1
            if reply.status not in (200, 202):
                err(f"pyfaasd dev: deploy refused: {reply.status} {reply.reason}: {reply.body.strip()}")
                return 1
            deployed = True
            suffix = f".{fn.namespace}" if fn.namespace else ""
            out(f"Serving {fn.directory} at {gateway}/function/{fn.name}{suffix} (edits load within a second).")
            out("Its output follows. Ctrl-C removes it.")
            _follow_logs(gateway, credentials, fn, out)
            return 0
        except KeyboardInterrupt:
            return 0
        finally:
            if deployed:
                body = {"functionName": fn.name, "namespace": fn.namespace or DEFAULT_NAMESPACE}
                with contextlib.suppress(OSError):
                    send("DELETE", f"{gateway}/system/functions", credentials, body=body)
                out(f"Removed {fn.qualified}.")


def _follow_logs(gateway: str, credentials: Credentials | None, fn: DevFunction, out: Out) -> None:
    """Print the function's log lines as they come, until the stream ends or Ctrl-C."""
    query = urllib.parse.urlencode(
        {"name": fn.name, "namespace": fn.namespace or DEFAULT_NAMESPACE, "follow": "true", "tail": "0"}
    )
    headers = {"Authorization": credentials.authorization} if credentials else {}
    request = urllib.request.Request(f"{gateway}/system/logs?{query}", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=None) as stream:  # noqa: S310
        for raw in stream:
            with contextlib.suppress(ValueError):
                out(str(json.loads(raw).get("text", "")).rstrip("\n"))
