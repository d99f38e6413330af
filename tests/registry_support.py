"""Real registries on loopback for tests (Debian's docker-registry, distribution 2.8): an origin, a
pull-through cache in front of it, one that requires htpasswd credentials. Each is a process of the test's
own, on a free port, with its storage in a temporary directory, stopped and removed by ``stop()``."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import free_port

BINARY = "docker-registry"


def require_registry() -> str:
    found = shutil.which(BINARY)
    if found is None:
        pytest.fail("docker-registry is not installed: scripts/setup installs it (apt-get install docker-registry)")
    return found


@dataclass
class Registry:
    root: Path
    proxy_of: str = ""  # "http://127.0.0.1:PORT": a pull-through cache of that registry
    htpasswd: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def log_path(self) -> Path:
        return self.root / "registry.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> Registry:
        self.root.mkdir(parents=True, exist_ok=True)
        config = [
            "version: 0.1",
            "log: {level: info, formatter: text, accesslog: {disabled: false}}",
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, delete: {{enabled: true}}}}",
            f"http: {{addr: '{self.host}'}}",
        ]
        if self.proxy_of:
            config.append(f"proxy: {{remoteurl: '{self.proxy_of}'}}")
        if self.htpasswd is not None:
            config.append(f"auth: {{htpasswd: {{realm: pyfaasd-tests, path: {self.htpasswd}}}}}")
        (self.root / "config.yml").write_text("\n".join(config) + "\n")
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [require_registry(), "serve", str(self.root / "config.yml")], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=1).close()
                return self
            except urllib.error.HTTPError:
                return self  # 401 from a registry that wants credentials: it is up
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"registry exited: {self.log()[-2000:]}") from None
                time.sleep(0.05)
        raise RuntimeError(f"registry on {self.host} did not come up: {self.log()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    subprocess.run(["htpasswd", "-Bbc", str(path), user, password], check=True, capture_output=True)
    return path


def push(local_image: str, target: str, config: Path | None = None) -> None:
    """Tag a local image as ``target`` and push it (to a loopback registry: plain HTTP is allowed), with the
    docker CLI's credentials from ``config`` (a directory with a config.json) when given."""
    subprocess.run(["docker", "tag", local_image, target], check=True, capture_output=True)
    cli = ["docker", "--config", str(config)] if config is not None else ["docker"]
    try:
        subprocess.run([*cli, "push", target], check=True, capture_output=True, timeout=120)
    finally:
        subprocess.run(["docker", "rmi", target], capture_output=True, check=False)


def remove_local(*images: str) -> None:
    for image in images:
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True, check=False)


def remove_images_of(host: str) -> None:
    """Every local name under a registry host (what the tests pulled from it), by name: an image that other
    names share (the locally built ones) stays."""
    listing = ["docker", "images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}"]
    out = subprocess.run(listing, capture_output=True, text=True, check=False).stdout
    names = []
    for line in out.splitlines():
        repository, tag, digest = [*line.split(), "", "", ""][:3]
        if repository.startswith(f"{host}/"):
            names.append(f"{repository}:{tag}" if tag != "<none>" else f"{repository}@{digest}")
    if names:
        subprocess.run(["docker", "rmi", *names], capture_output=True, check=False)
