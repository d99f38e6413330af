"""Importing the hosts file reader loads no netlink library (the package layering itself is checked by
``lint-imports``, from the contracts in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_hosts_reader_does_not_load_pyroute2() -> None:
    code = "import sys, netconf, netconf.hosts; print('pyroute2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
