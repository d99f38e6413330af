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


def runtime_ls(target: Target, out: Out, err: Out) -> int:
    reply = send("GET", f"{target.gateway}/system/runtimes", target.credentials)
    if reply.status != 200:
        return failed("cannot list the runtimes", reply, err)
    table([("NAME", "IMAGE", "MODE"), *((r["name"], r["image"], r["mode"] or "-") for r in reply.json())], out)
    return 0


def runtime_build(name: str, directory: Path, tag: str | None, mode: str, out: Out, err: Out) -> int:
    """``docker build`` of ``directory`` with the runtime labels; the exit status."""
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
    command += ["--tag", image, str(directory)]
    out(f"Building runtime {name} as {image} from {directory}.")
    result = subprocess.run(command, env={**os.environ, "DOCKER_BUILDKIT": "0"}, check=False)
    if result.returncode != 0:
        err(f"pyfaasd runtime build: docker build failed (exit status {result.returncode})")
        return 1
    out(f"Runtime {name}: {image}. Deploy code onto it with: pyfaasd deploy PATH --name NAME --runtime {name}")
    return 0
