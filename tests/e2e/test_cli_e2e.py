"""`pyfaasd list|invoke|logs|remove|secret` against a real ``pyfaasd up``, as root on the host uses them: the
credentials read from the state dir (``PYFAASD_STATE_DIR``), the gateway from ``OPENFAAS_URL``, no login."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.stack_fixtures import ECHO, MakeStack

pytestmark = pytest.mark.docker


def test_the_function_commands_need_no_login(make_stack: MakeStack, name: str) -> None:
    stack = make_stack(PYFAASD_AUTOSCALE="false")
    env = {**os.environ, "PYFAASD_STATE_DIR": str(stack.state_dir), "OPENFAAS_URL": stack.url}

    def pyfaasd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pyfaasd.cli", *args]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, timeout=120)

    assert stack.call("POST", "/system/functions", {"service": name, "image": ECHO}).status == 202

    listed = pyfaasd("list", "-v")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0] == ["NAME", "STATUS", "REPLICAS", "INVOCATIONS", "IMAGE", "OR", "CODE", "URL"]
    assert [name, "Ready", "1/1", "0", ECHO, f"{stack.url}/function/{name}"] in rows

    invoked = pyfaasd("invoke", name, "--query", "q=1", "-H", "X-Test=yes", stdin="hello from stdin")
    assert invoked.returncode == 0, invoked.stderr
    assert "hello from stdin" in invoked.stdout
    assert '"X-Test": "yes"' in invoked.stdout
    assert "q=1" in invoked.stdout
    assert "1" in [row[3] for row in (line.split() for line in pyfaasd("list").stdout.splitlines()) if row[0] == name]

    # logs -f follows until interrupted; the echo function logs each request it serves.
    follower = subprocess.Popen(
        [sys.executable, "-m", "pyfaasd.cli", "logs", name, "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(1.0)
        assert pyfaasd("invoke", name, stdin="second").returncode == 0
        time.sleep(1.5)
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=10)
    assert follower.returncode == 0, err
    assert out.strip(), "no log line arrived"
    assert all(f" {name} (" in line for line in out.splitlines()), out
    once = pyfaasd("logs", name, "--tail", "5")
    assert once.returncode == 0, once.stderr

    secret = f"{name}-key"
    assert pyfaasd("secret", "create", secret, stdin="hush").returncode == 0
    assert secret in pyfaasd("secret", "ls").stdout
    duplicate = pyfaasd("secret", "create", secret, "--from-literal", "again")
    assert duplicate.returncode == 1
    assert "409" in duplicate.stderr
    assert pyfaasd("secret", "rm", secret).returncode == 0
    assert secret not in pyfaasd("secret", "ls").stdout

    removed = pyfaasd("remove", name)
    assert (removed.returncode, removed.stdout) == (0, f"Removed {name}.\n")
    assert stack.call("GET", f"/system/function/{name}").status == 404
    missing = pyfaasd("remove", name)
    assert missing.returncode == 1
    assert "404" in missing.stderr
