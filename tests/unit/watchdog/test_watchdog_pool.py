"""A pooled container's watchdog: it waits for the provider's hand-over and takes the function's environment."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from servicekit.pool_handover import ENV_LOAD, FIFO_NAME, LOAD_FILE
from watchdog.pool import LoadError, read_load, take_function, wait_for_load


def control(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / FIFO_NAME)
    return tmp_path / LOAD_FILE


def hand_over(load: Path, env: dict[str, str]) -> None:
    """What the provider does (provider/pool_slots.py): write the file whole, then poke the FIFO."""
    tmp = load.with_name(".tmp")
    tmp.write_text(json.dumps({"env": env}))
    tmp.rename(load)
    fd = os.open(load.parent / FIFO_NAME, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"1")
    os.close(fd)


def test_the_watchdog_waits_for_the_hand_over_and_wakes_at_the_poke(tmp_path: Path) -> None:
    load = control(tmp_path)
    writer = threading.Timer(0.2, hand_over, (load, {"GREETING": "hi"}))
    started = time.monotonic()
    writer.start()
    env = wait_for_load(load)
    waited = time.monotonic() - started
    writer.join()
    assert env == {"GREETING": "hi"}
    assert waited >= 0.2  # it did wait


def test_a_load_file_already_there_is_taken_at_once(tmp_path: Path) -> None:
    load = control(tmp_path)
    load.write_text(json.dumps({"env": {"A": "1"}}))  # a restarted pooled replica
    assert wait_for_load(load) == {"A": "1"}


def test_a_bad_load_file_names_itself(tmp_path: Path) -> None:
    load = tmp_path / LOAD_FILE
    assert read_load(load) is None
    load.write_text(json.dumps({"env": {"A": 1}}))
    with pytest.raises(LoadError, match="object of strings"):
        read_load(load)
    load.write_text("{")
    with pytest.raises(LoadError, match=LOAD_FILE):
        read_load(load)


def test_the_functions_environment_is_laid_over_and_the_hand_over_variable_removed(tmp_path: Path) -> None:
    load = control(tmp_path)
    load.write_text(json.dumps({"env": {"mode": "python", "GREETING": "hi"}}))
    environ = {ENV_LOAD: str(load), "mode": "static", "PATH": "/bin"}
    take_function(environ)
    assert environ == {"mode": "python", "GREETING": "hi", "PATH": "/bin"}


def test_a_watchdog_that_is_not_pooled_changes_nothing() -> None:
    environ = {"mode": "static"}
    take_function(environ)
    assert environ == {"mode": "static"}
