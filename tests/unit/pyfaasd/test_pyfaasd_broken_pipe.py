"""A CLI whose reader goes away (``pyfaasd ... | head``) stops quietly, as other Unix tools do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_a_closed_pipe_is_no_traceback() -> None:
    # A command that prints more than a pipe holds, as `logs -f` does, standing in for `version`.
    script = (
        "import sys\n"
        "from pyfaasd import cli\n"
        "def flood(args):\n"
        "    for _ in range(100000):\n"
        "        print('line ' * 20, flush=True)\n"
        "    return 0\n"
        "cli._version = flood\n"
        "sys.exit(cli.main(['version']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 141
