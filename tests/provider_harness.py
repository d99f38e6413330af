"""A real provider (or the whole stack, ``pyfaasd up``) on a throwaway bridge, subnet and state dir, driven over
HTTP like faas-cli does.

Everything it makes is removed in :meth:`ProviderProcess.cleanup`: the containers of its bridge (they carry
``com.pyfaasd.bridge=<bridge>``), the bridge and its iptables rules.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from netconf import read_hosts
from tests.helpers import ROOT, free_port
from tests.net_support import force_cleanup, free_test_subnet


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 60
) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read(), dict(e.headers))


@dataclass
class ProviderProcess:
    state_dir: Path
    bridge: str = field(default_factory=lambda: f"pft{secrets.token_hex(4)}")
    subnet: IPv4Network = field(default_factory=free_test_subnet)
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ("-m", "provider")
    gateway_port: int | None = None  # set: the process is the whole stack, and ``url`` is the gateway's
    gateway_host: str = "127.0.0.1"  # 0.0.0.0: functions can reach it at the bridge IP too
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @classmethod
    def stack(cls, state_dir: Path, **kwargs: Any) -> ProviderProcess:
        """``pyfaasd up``: provider and gateway in one process; requests go to the gateway."""
        command = ("-m", "pyfaasd.cli", "up", "--pid-file", str(state_dir / "up.pid"))
        return cls(state_dir=state_dir, command=command, gateway_port=free_port(), **kwargs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port or self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYFAASD_STATE_DIR": str(self.state_dir),
            "PYFAASD_BRIDGE": self.bridge,
            "PYFAASD_SUBNET": str(self.subnet),
            "PYFAASD_PROVIDER_ADDR": f"127.0.0.1:{self.port}",
            **({"PYFAASD_GATEWAY_ADDR": f"{self.gateway_host}:{self.gateway_port}"} if self.gateway_port else {}),
            "PYFAASD_LOG_LEVEL": "debug",
            **self.extra_env,
        }

    @property
    def log_path(self) -> Path:
        kind = "up" if self.gateway_port else "provider"
        return self.state_dir.parent / f"{self.bridge}-{kind}.log"

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to answer."""
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, *self.command], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self.proc

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until ``/healthz`` is 200 (for a stack: the provider has recovered)."""
        self.launch()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"provider exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if http("GET", f"{self.url}/healthz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"provider did not answer /healthz within {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    @property
    def authorization(self) -> str:
        secrets_dir = self.state_dir / "secrets"
        user = (secrets_dir / "basic-auth-user").read_text().strip()
        password = (secrets_dir / "basic-auth-password").read_text().strip()
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(
        self, method: str, path: str, payload: Any = None, *, raw: bytes | None = None, auth: bool = True
    ) -> Reply:
        headers = {"Authorization": self.authorization} if auth else {}
        body = raw
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        return http(method, f"{self.url}{path}", body, headers)

    def hosts(self, name: str, namespace: str = "openfaas-fn") -> list[str]:
        return [str(ip) for ip in read_hosts(self.state_dir / "hosts").lookup(f"{name}.{namespace}")]

    def containers(self, *, running_only: bool = False, idle_pool: bool = False) -> list[dict[str, str]]:
        """This provider's containers as ``docker ps`` shows them: its function replicas (pool-made ones too), and
        with ``idle_pool`` also the warm pool's unclaimed containers."""
        found = self._containers(running_only=running_only)
        return found if idle_pool else [c for c in found if not self.is_idle_pool(c)]

    def replicas_gone(self, name: str) -> bool:
        """No replica of the function is published, nor has a running container (with the swarm backend a task
        taken out of service still answers until its container stops: docs/swarm.md)."""
        running = [c for c in self.containers(running_only=True) if labels_of(c).get("com.pyfaasd.function") == name]
        return not self.hosts(name) and not running

    def is_idle_pool(self, container: dict[str, str]) -> bool:
        """A warm pool container no function has claimed (its slot has no claim record)."""
        slot = labels_of(container).get("com.pyfaasd.pool.slot")
        return bool(slot) and not (self.state_dir / "pool" / str(slot) / "claim.json").exists()

    def idle_pool(self, size: int) -> set[str]:
        """The IDs of the warm pool's idle containers once it is full (``size``) as the provider sees it: Docker
        shows them running and unclaimed, and the provider's last word on the pool, after any claim, is that it is
        full (``pool_filled``, logged once the containers are attached); empty until then."""
        found = {c["ID"] for c in self.containers(running_only=True, idle_pool=True) if self.is_idle_pool(c)}
        if len(found) != size:
            return set()
        events = []
        for line in self.log_tail(100_000).splitlines():
            if '"pool_filled"' in line or '"pool_claimed"' in line:
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        last = events[-1] if events else {}
        return found if last.get("event") == "pool_filled" and last.get("idle") == size else set()

    def _containers(self, *, running_only: bool = False) -> list[dict[str, str]]:
        args = [
            "docker",
            "ps",
            "--no-trunc",
            "--format",
            "{{json .}}",
            "--filter",
            f"label=com.pyfaasd.bridge={self.bridge}",
        ]
        if running_only:
            args += ["--filter", "status=running"]  # not a paused replica of a function at zero: it serves nothing
        else:
            args.insert(2, "-a")
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def allocations(self) -> dict[str, str]:
        path = self.state_dir / "ipam" / f"{self.bridge}.json"
        try:
            data: dict[str, str] = json.loads(path.read_text()).get("allocations", {})
        except FileNotFoundError:
            return {}
        return data

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        ids = [c["ID"] for c in self.containers(idle_pool=True)]
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
        subprocess.run(
            [sys.executable, "-m", "netconf", "down"], env=self.env, cwd=ROOT, capture_output=True, check=False
        )
        force_cleanup(self.bridge)


def labels_of(container: dict[str, str]) -> dict[str, str]:
    """The labels of a container as ``docker ps --format '{{json .}}'`` lists them."""
    return dict(part.split("=", 1) for part in container["Labels"].split(",") if "=" in part)


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_for_hostnames(url: str, count: int, timeout: float, what: str) -> set[str]:
    """GET ``url`` (a function that answers its ``hostname`` in JSON) until ``count`` replicas have answered; each
    answer must be a 200."""
    served: set[str] = set()

    def all_serve() -> bool:
        answer = http("GET", url, timeout=30)
        assert answer.status == 200, answer.text
        served.add(answer.json()["hostname"])
        return len(served) == count

    wait_for(all_serve, timeout, 0.1, what)
    return served


def get(url: str, timeout: float = 5.0) -> Reply:
    return http("GET", url, timeout=timeout)
