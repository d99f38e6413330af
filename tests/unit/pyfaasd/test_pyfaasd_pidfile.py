"""pyfaasd.pidfile: the file names this process while the block runs and is gone after it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyfaasd.pidfile import pid_file


def test_pid_file_names_this_process_and_is_removed_on_exit(tmp_path: Path) -> None:
    path = tmp_path / "run" / "up.pid"
    with pid_file(path):
        assert path.read_text() == f"{os.getpid()}\n"
        assert [p.name for p in path.parent.iterdir()] == ["up.pid"]  # no partial file left
    assert not path.exists()


def test_pid_file_is_removed_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "up.pid"
    with pytest.raises(RuntimeError), pid_file(path):
        raise RuntimeError("failed")
    assert not path.exists()


def test_pid_file_replaces_a_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "up.pid"
    path.write_text("999999\n")
    with pid_file(path):
        assert path.read_text().strip() == str(os.getpid())


def test_pid_file_of_a_newer_process_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "up.pid"
    with pid_file(path):
        path.write_text("12345\n")  # another `pyfaasd up` took over the file
    assert path.read_text() == "12345\n"


def test_no_path_writes_nothing(tmp_path: Path) -> None:
    with pid_file(None):
        pass
    assert list(tmp_path.iterdir()) == []
