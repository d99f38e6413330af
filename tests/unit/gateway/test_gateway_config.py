"""GatewayConfig from the environment, and flags laid over it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.__main__ import add_arguments, config_from, main
from gateway.app import open_queue
from gateway.config import GatewayConfig
from gateway.doorbell import Doorbell
from gateway.jetstream_queue import JetStreamCallQueue
from gateway.sqlite_queue import SqliteCallQueue
from servicekit.cpus import available_cpus
from servicekit.settings import SettingError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_follow_the_architecture() -> None:
    config = GatewayConfig.from_env({})
    assert (config.host, config.port) == ("0.0.0.0", 8080)
    assert config.provider.url == "http://127.0.0.1:8081"
    assert config.hosts_file == Path("/var/lib/pyfaasd/hosts")
    assert config.secrets_dir == Path("/var/lib/pyfaasd/secrets")
    assert (config.read_timeout_s, config.write_timeout_s, config.upstream_timeout_s) == (60.0, 60.0, 60.0)
    assert config.scale_from_zero is True
    assert config.scale_from_zero_timeout_s == 30.0
    assert config.max_body_bytes == 64 * 1024 * 1024
    assert (config.workers, config.function_port) == (min(available_cpus(), 64), 8080)  # auto


def test_environment_sets_everything() -> None:
    config = GatewayConfig.from_env(
        {
            "PYFAASD_GATEWAY_ADDR": "127.0.0.1:9090",
            "PYFAASD_PROVIDER_URL": "http://localhost:9091/base/",
            "PYFAASD_STATE_DIR": "/tmp/state",
            "PYFAASD_READ_TIMEOUT": "5",
            "PYFAASD_WRITE_TIMEOUT": "1m",
            "PYFAASD_UPSTREAM_TIMEOUT": "250ms",
            "PYFAASD_SCALE_FROM_ZERO": "false",
            "PYFAASD_SCALE_FROM_ZERO_TIMEOUT": "2s",
            "PYFAASD_MAX_BODY_BYTES": "0",
            "PYFAASD_GATEWAY_WORKERS": "2",
            "PYFAASD_FUNCTION_PORT": "5000",
            "PYFAASD_LOG_LEVEL": "DEBUG",
        }
    )
    assert (config.host, config.port) == ("127.0.0.1", 9090)
    assert (config.provider.host, config.provider.port, config.provider.base_path) == ("127.0.0.1", 9091, "/base")
    assert config.hosts_file == Path("/tmp/state/hosts")
    assert (config.read_timeout_s, config.write_timeout_s, config.upstream_timeout_s) == (5.0, 60.0, 0.25)
    assert config.scale_from_zero is False
    assert config.scale_from_zero_timeout_s == 2.0
    assert (config.max_body_bytes, config.workers, config.function_port, config.log_level) == (0, 2, 5000, "debug")


def test_hosts_file_override() -> None:
    config = GatewayConfig.from_env({"PYFAASD_STATE_DIR": "/s", "PYFAASD_HOSTS_FILE": "/elsewhere/hosts"})
    assert config.hosts_file == Path("/elsewhere/hosts")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PYFAASD_GATEWAY_ADDR", "[::]:8080"),
        ("PYFAASD_PROVIDER_URL", "https://x:1"),
        ("PYFAASD_PROVIDER_URL", "http://[::1]:8081"),
        ("PYFAASD_READ_TIMEOUT", "soon"),
        ("PYFAASD_UPSTREAM_TIMEOUT", "0"),
        ("PYFAASD_SCALE_FROM_ZERO", "maybe"),
        ("PYFAASD_MAX_BODY_BYTES", "-1"),
        ("PYFAASD_GATEWAY_WORKERS", "0"),
        ("PYFAASD_FUNCTION_PORT", "70000"),
        ("PYFAASD_LOG_LEVEL", "loud"),
        ("PYFAASD_NATS_URL", "http://127.0.0.1:4222"),
        ("PYFAASD_NATS_URL", "nats://127.0.0.1"),
        ("PYFAASD_ASYNC_LEASE", "0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingError, match=f"^{name}: "):
        GatewayConfig.from_env({name: value})


def test_the_swarm_backend_queues_async_calls_on_jetstream_and_docker_on_sqlite(tmp_path: Path) -> None:
    doorbell = Doorbell(tmp_path)
    docker = GatewayConfig.from_env({"PYFAASD_STATE_DIR": str(tmp_path)})
    assert isinstance(open_queue(docker, doorbell), SqliteCallQueue)
    swarm = GatewayConfig.from_env(
        {
            "PYFAASD_STATE_DIR": str(tmp_path),
            "PYFAASD_BACKEND": "swarm",
            "PYFAASD_NATS_URL": "nats://10.0.0.5:4222, nats://10.0.0.6:4222",
            "PYFAASD_ASYNC_LEASE": "20s",
        }
    )
    queue = open_queue(swarm, doorbell)
    assert isinstance(queue, JetStreamCallQueue)
    assert (queue.url, swarm.async_lease_s) == ("nats://10.0.0.5:4222,nats://10.0.0.6:4222", 20.0)
    assert GatewayConfig.from_env({}).nats_url == "nats://127.0.0.1:4222"


def test_flags_win_over_the_environment() -> None:
    env = {"PYFAASD_GATEWAY_ADDR": "127.0.0.1:1111", "PYFAASD_SCALE_FROM_ZERO": "false", "PYFAASD_GATEWAY_WORKERS": "3"}
    config = config_from(parse(["--addr", "127.0.0.1:2222", "--scale-from-zero", "--read-timeout", "7s"]), env)
    assert config.port == 2222
    assert config.scale_from_zero is True
    assert config.read_timeout_s == 7.0
    assert config.workers == 3  # no flag: the environment's
    assert config_from(parse(["--no-access-log"]), {}).access_log is False


def test_a_bad_setting_exits_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYFAASD_GATEWAY_WORKERS", "many")
    assert main([]) == 2
    assert "PYFAASD_GATEWAY_WORKERS" in capsys.readouterr().err


def test_missing_credentials_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYFAASD_STATE_DIR", str(tmp_path))
    monkeypatch.setattr("gateway.__main__.configure_logging", lambda level: None)  # keep the suite's logging
    assert main(["--addr", "127.0.0.1:0"]) == 2
    assert "basic-auth-user" in capsys.readouterr().err
