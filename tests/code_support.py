"""Helpers for code functions in tests and benchmarks: a wheel pip can install with no network."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

DEP = "pyfaasd_demo_dep"  # the module the wheel installs; its VALUE is "from a wheel"
REQUIREMENT = "pyfaasd-demo-dep==1.0"


def make_wheel(directory: Path) -> Path:
    """A minimal pure-Python wheel (pip installs it from a local directory, no network)."""
    files = {
        f"{DEP}.py": b'VALUE = "from a wheel"\n',
        f"{DEP}-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: pyfaasd-demo-dep\nVersion: 1.0\n",
        f"{DEP}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: pyfaasd-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{DEP}-1.0.dist-info/RECORD,,")
    files[f"{DEP}-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{DEP}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel
