from __future__ import annotations

import pytest

from servicekit.settings import SettingError, parse_duration
from watchdog.config import Mode, WatchdogConfig


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("0.5", 0.5),
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("0", 0.0),
        ("1.5s", 1.5),
        ("100us", 1e-4),
    ],
)
def test_parse_duration_accepts_seconds_and_go_durations(text: str, seconds: float) -> None:
    assert parse_duration("exec_timeout", text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "30x", "s", "-1", "1m-3s", "10 s", "nan", "inf"])
def test_parse_duration_rejects_junk_naming_the_variable(text: str) -> None:
    with pytest.raises(SettingError, match=r"^exec_timeout: "):
        parse_duration("exec_timeout", text)


def test_defaults_match_of_watchdog() -> None:
    config = WatchdogConfig.from_env({"fprocess": "cat"})
    assert config.mode is Mode.STREAMING
    assert config.port == 8080
    assert config.metrics_port == 8081
    assert config.read_timeout_s == config.write_timeout_s == config.exec_timeout_s == 30.0
    assert config.healthcheck_interval_s == 30.0
    assert config.max_inflight == 0
    assert config.prefix_logs is True
    assert config.content_type == "application/octet-stream"
    assert config.static_path == "/home/app/public"
    assert config.lock_path == "/tmp/.lock"


def test_healthcheck_interval_defaults_to_write_timeout() -> None:
    config = WatchdogConfig.from_env({"fprocess": "cat", "write_timeout": "7s"})
    assert config.healthcheck_interval_s == 7.0


def test_function_process_wins_over_fprocess_and_is_split_into_argv() -> None:
    config = WatchdogConfig.from_env({"fprocess": "cat", "function_process": "python3 -c 'print(1)'"})
    assert config.fprocess == ("python3", "-c", "print(1)")


def test_http_upstream_url_wins_and_localhost_is_dialled_as_ipv4() -> None:
    config = WatchdogConfig.from_env(
        {"mode": "http", "fprocess": "x", "upstream_url": "http://a:1", "http_upstream_url": "http://localhost:5000/"}
    )
    assert config.upstream_url == "http://127.0.0.1:5000"


def test_lock_file_follows_tmpdir() -> None:
    assert WatchdogConfig.from_env({"fprocess": "cat", "TMPDIR": "/run/x"}).lock_path == "/run/x/.lock"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"mode": "afterburn", "fprocess": "cat"}, "mode"),
        ({"mode": "streaming"}, "fprocess"),
        ({"mode": "http", "fprocess": "x"}, "upstream_url"),
        ({"mode": "http", "fprocess": "x", "upstream_url": "ftp://h:1"}, "upstream_url"),
        ({"mode": "http", "fprocess": "x", "upstream_url": "http://[::1]:80"}, "upstream_url"),
        ({"fprocess": "cat", "port": "http"}, "port"),
        ({"fprocess": "cat", "port": "70000"}, "port"),
        ({"fprocess": "cat", "port": "9000", "metrics_port": "9000"}, "metrics_port"),
        ({"fprocess": "cat", "write_timeout": "0"}, "write_timeout"),
        ({"fprocess": "cat", "exec_timeout": "ten"}, "exec_timeout"),
        ({"fprocess": "cat", "read_timeout": "-5s"}, "read_timeout"),
        ({"fprocess": "cat", "healthcheck_interval": "soon"}, "healthcheck_interval"),
        ({"fprocess": "cat", "max_inflight": "-1"}, "max_inflight"),
        ({"fprocess": "cat", "max_inflight": "many"}, "max_inflight"),
        ({"fprocess": "cat", "prefix_logs": "maybe"}, "prefix_logs"),
        ({"fprocess": "cat", "suppress_lock": "2"}, "suppress_lock"),
        ({"fprocess": "cat", "buffer_http": "yes please"}, "buffer_http"),
        ({"fprocess": "cat", "log_buffer_size": "0"}, "log_buffer_size"),
        ({"fprocess": "cat", "ready_path": "health"}, "ready_path"),
        ({"fprocess": "cat", "workers": "0"}, "workers"),
        ({"fprocess": "'unterminated"}, "fprocess"),
        ({"fprocess": "cat", "log_level": "loud"}, "log_level"),
    ],
)
def test_bad_values_are_errors_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingError, match=f"^{variable}: "):
        WatchdogConfig.from_env(env)


@pytest.mark.parametrize("mode", ["static", "python"])
def test_modes_without_a_process_need_no_fprocess(mode: str) -> None:
    assert WatchdogConfig.from_env({"mode": mode}).fprocess == ()
