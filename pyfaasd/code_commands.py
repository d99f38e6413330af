"""``pyfaasd code ls|rm|prune`` and ``pyfaasd runtime ls|build``: the code store and the runtime library.

The code commands and ``runtime ls`` talk to the gateway like ``pyfaasd deploy`` (same URL and credential
rules); ``runtime build`` builds an image on this host with the local ``docker`` command, labelled so the
provider lists it as a runtime (no registry involved, like ``scripts/build-images``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from provider.code_functions import LABEL_RUNTIME, LABEL_RUNTIME_MODE
from pyfaasd.gateway_client import Out, Target, failed, send, table

_RUNTIME_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def code_ls(target: Target, out: Out, err: Out) -> int:
    reply = send("GET", f"{target.gateway}/system/code", target.credentials)
    if reply.status != 200:
        return failed("cannot list the code bundles", reply, err)
    rows = [("DIGEST", "SIZE", "FILES", "CREATED", "FUNCTIONS")]
    for bundle in reply.json():
        rows.append(
            (
                bundle["digest"],
                str(bundle["size"]),
                str(len(bundle.get("files", []))),
                bundle.get("created", ""),
                ",".join(bundle.get("functions", [])) or "-",
            )
        )
    table(rows, out)
    return 0


def code_rm(target: Target, digests: Sequence[str], out: Out, err: Out) -> int:
    status = 0
    for digest in digests:
        reply = send("DELETE", f"{target.gateway}/system/code/{digest}", target.credentials)
        if reply.status == 200:
            out(f"Removed {digest}.")
        else:
            status = failed(f"cannot remove {digest}", reply, err)
    return status


def code_prune(target: Target, out: Out, err: Out) -> int:
    reply = send("POST", f"{target.gateway}/system/code/prune", target.credentials)
    if reply.status != 200:
        return failed("cannot prune", reply, err)
    removed = reply.json().get("removedDependencySets", [])
    out(f"Removed {len(removed)} unused dependency set{'s' if len(removed) != 1 else ''}.")
    for key in removed:
        out(f"  {key}")
    return 0


def _is_deprecation_notice(line: str) -> bool:
    """The legacy builder's notice (DOCKER_BUILDKIT=0 is on purpose: no BuildKit daemon, no network)."""
    text = line.strip()
    return text.startswith("DEPRECATED: The legacy builder") or text in (
        "BuildKit is currently disabled; enable it by removing the DOCKER_BUILDKIT=0",
        "environment-variable.",
        "Install the buildx component to build images with BuildKit:",
        "https://docs.docker.com/go/buildx/",
    )


def runtime_ls(target: Target, out: Out, err: Out) -> int:
    reply = send("GET", f"{target.gateway}/system/runtimes", target.credentials)
    if reply.status != 200:
        return failed("cannot list the runtimes", reply, err)
    table([("NAME", "IMAGE", "MODE"), *((r["name"], r["image"], r["mode"] or "-") for r in reply.json())], out)
    return 0


_STEP: Final = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_BAR_WIDTH: Final = 24


def build_progress(line: str) -> str | None:
    """A one-line progress bar for a ``docker build`` step line (``Step 3/9 : RUN ...``), else None."""
    step = _STEP.match(line)
    if step is None:
        return None
    done, total, what = int(step[1]), int(step[2]), step[3]
    filled = _BAR_WIDTH * done // max(total, 1)
    return f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] step {done}/{total}: {what[:60]}"


def runtime_build(
    name: str, directory: Path, tag: str | None, mode: str, out: Out, err: Out, *, tty: bool | None = None
) -> int:
    """``docker build`` of ``directory`` with the runtime labels; the exit status.

    On a terminal the build shows as one progress bar over its steps (the whole output is printed if it fails);
    otherwise docker's lines pass through, less the legacy builder's deprecation notice."""
    tty = sys.stdout.isatty() if tty is None else tty
    if not _RUNTIME_NAME.fullmatch(name):
        err(f"pyfaasd runtime build: {name!r} is not a runtime name (lower-case letters, digits, '.', '_', '-')")
        return 2
    if not (directory / "Dockerfile").is_file():
        err(f"pyfaasd runtime build: no Dockerfile in {directory}")
        return 2
    docker = shutil.which("docker")
    if docker is None:
        err("pyfaasd runtime build: the docker command is not installed")
        return 1
    image = tag or f"pyfaasd/runtime-{name}:latest"
    command = [docker, "build", "--label", f"{LABEL_RUNTIME}={name}", "--label", f"{LABEL_RUNTIME_MODE}={mode}"]
    # --force-rm: the legacy builder keeps the container of a failed step otherwise, one per failed build.
    command += ["--force-rm", "--tag", image, str(directory)]
    out(f"Building runtime {name} as {image} from {directory}.")
    proc = subprocess.Popen(
        command,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    seen: list[str] = []
    with proc.stdout:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            if _is_deprecation_notice(line):
                continue
            seen.append(line)
            bar = build_progress(line)
            if not tty:
                out(line)
            elif bar is not None:
                print(f"\r\033[K{bar}", end="", flush=True)
    code = proc.wait()
    if tty:
        print(flush=True)
    if code != 0:
        if tty:
            for line in seen[-40:]:
                err(line)
        err(f"pyfaasd runtime build: docker build failed (exit status {code})")
        return 1
    out(f"Runtime {name}: {image}. Deploy code onto it with: pyfaasd deploy PATH --name NAME --runtime {name}")
    return 0
