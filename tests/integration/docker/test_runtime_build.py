"""``pyfaasd runtime build`` against the real engine: one progress bar on a terminal, no legacy-builder notice."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from pyfaasd.code_commands import build_progress, runtime_build
from tests.docker_support import require_image

pytestmark = pytest.mark.docker

BASE = "pyfaasd/runtime-python:latest"


def test_a_step_line_is_a_bar() -> None:
    assert build_progress("Step 2/4 : RUN pip install x") == "[############............] step 2/4: RUN pip install x"
    assert build_progress(" ---> Running in 1234") is None


def test_a_build_on_a_terminal_is_one_bar_and_its_labels_make_it_a_runtime(
    docker_ready: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_image(BASE)
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nRUN true\nLABEL test.pyfaasd=runtime-build\n")
    tag = f"pyfaasd/test-runtime-{secrets.token_hex(3)}:latest"
    out: list[str] = []
    err: list[str] = []
    try:
        assert runtime_build("testrt", tmp_path, tag, "python", out.append, err.append, tty=True) == 0
        shown = capsys.readouterr().out
        assert "step 3/5: LABEL test.pyfaasd=runtime-build" in shown  # then the two runtime labels
        assert "[########################]" in shown
        assert "DEPRECATED" not in shown + "".join(out + err)
        assert "Running in" not in shown  # docker's own lines are behind the bar
        labels = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", tag],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert '"com.pyfaasd.runtime":"testrt"' in labels
    finally:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def test_a_failed_build_on_a_terminal_shows_docker_s_lines(docker_ready: None, tmp_path: Path) -> None:
    require_image(BASE)
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo broken-step && false\n")
    err: list[str] = []
    before = containers()
    assert runtime_build("testrt", tmp_path, "pyfaasd/test-never:latest", "python", print, err.append, tty=True) == 1
    assert any("broken-step" in line for line in err)
    assert err[-1].startswith("pyfaasd runtime build: docker build failed")
    assert containers() == before  # the failed step's container is not left behind


def containers() -> set[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True, check=True).stdout
    return set(out.split())
