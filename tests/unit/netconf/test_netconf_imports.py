"""Import boundaries: pyroute2 only in netconf/_netlink.py, and the hosts file reader stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import netconf

PACKAGE = Path(netconf.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_pyroute2_is_imported_only_by_netlink_module() -> None:
    importers = sorted(p.name for p in PACKAGE.glob("*.py") if "pyroute2" in _imported_modules(p))
    assert importers == ["_netlink.py"]


def test_netconf_imports_only_stdlib_pyroute2_and_the_foundation() -> None:
    # structlog and servicekit since netconf logs and reads its settings like every other part (issue 21).
    allowed = set(sys.stdlib_module_names) | {"netconf", "pyroute2", "servicekit", "structlog"}
    for path in PACKAGE.glob("*.py"):
        assert _imported_modules(path) <= allowed, path.name


def test_importing_hosts_reader_does_not_load_pyroute2() -> None:
    code = "import sys, netconf, netconf.hosts; print('pyroute2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
