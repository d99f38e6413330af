"""The daemons' settings tables read together: one set of rules, the README's tables, ``pyfaasd up``'s flags."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.config import SETTINGS as GATEWAY_SETTINGS
from gateway.config import GatewayConfig
from netconf.config import SETTINGS as NETCONF_SETTINGS
from netconf.config import NetConfig
from provider.__main__ import main as provider_main
from provider.config import SETTINGS as PROVIDER_SETTINGS
from provider.config import ProviderConfig
from pyfaasd import up
from servicekit import defaults
from servicekit.settings import Setting, SettingError
from watchdog.config import WatchdogConfig

README = Path(__file__).resolve().parents[3] / "README.md"


def test_stop_timeout_inf_is_a_config_error_naming_the_variable() -> None:
    # It used to pass and raise OverflowError in docker_runtime (int(inf)) at the first replica stop.
    for value in ("inf", "nan", "-1"):
        with pytest.raises(SettingError, match=r"^PYFAASD_STOP_TIMEOUT: "):
            ProviderConfig.from_env({"PYFAASD_STOP_TIMEOUT": value})


def test_provider_exits_2_on_an_infinite_stop_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PYFAASD_STOP_TIMEOUT", "inf")
    assert provider_main([]) == 2
    assert "PYFAASD_STOP_TIMEOUT" in capsys.readouterr().err


def _watchdog_bool(text: str) -> bool:
    return WatchdogConfig.from_env({"fprocess": "cat", "prefix_logs": text}).prefix_logs


def _gateway_bool(text: str) -> bool:
    return GatewayConfig.from_env({"PYFAASD_ACCESS_LOG": text}).access_log


def _watchdog_duration(text: str) -> float:
    return WatchdogConfig.from_env({"fprocess": "cat", "exec_timeout": text}).exec_timeout_s


def _provider_duration(text: str) -> float:
    return ProviderConfig.from_env({"PYFAASD_STOP_TIMEOUT": text}).stop_timeout_s


def _outcome(read: Any, text: str) -> object:
    try:
        return read(text)
    except SettingError:
        return "error"


@pytest.mark.parametrize(
    "text",
    ["1", "t", "T", "TRUE", "true", "True", "yes", "on", "0", "f", "F", "FALSE", "false", "False", "no", "off",
     "2", "maybe", "y", "n", "truthy"],
)  # fmt: skip
def test_the_watchdog_and_the_daemons_read_booleans_alike(text: str) -> None:
    assert _outcome(_watchdog_bool, text) == _outcome(_gateway_bool, text)


@pytest.mark.parametrize(
    "text",
    ["30", "0.5", "0", "30s", "1m30s", "250ms", "1h", "100us", ".5s", "inf", "-inf", "nan", "1e999", "-1", "-5s",
     "abc", "30x", "s", "10 s", "1m-3s", "5s3"],
)  # fmt: skip
def test_the_watchdog_and_the_provider_read_durations_alike(text: str) -> None:
    assert _outcome(_watchdog_duration, text) == _outcome(_provider_duration, text)


def test_shared_defaults_come_from_servicekit() -> None:
    provider, gateway, net = ProviderConfig.from_env({}), GatewayConfig.from_env({}), NetConfig.from_env({})
    assert provider.state_dir == gateway.state_dir == net.state_dir == defaults.STATE_DIR
    assert f"{provider.host}:{provider.port}" == defaults.PROVIDER_ADDR
    assert gateway.provider.url == defaults.PROVIDER_URL
    assert provider.function_port == gateway.function_port == defaults.FUNCTION_PORT
    assert ProviderConfig() == provider  # the dataclass defaults and the table's agree
    assert GatewayConfig() == gateway


def _readme_table(heading: str) -> list[list[str]]:
    """The rows of the first table below ``heading``, cells without backticks."""
    text = README.read_text()
    section = text[text.index(heading) :]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows[1:]  # without the header


def _rows(settings: tuple[Setting[Any], ...]) -> list[tuple[str, str, str]]:
    return [(s.env, s.flag or "", s.shown_default) for s in settings]


def test_readme_provider_table_is_the_provider_settings() -> None:
    rows = _readme_table("### Provider (`pyfaasd provider`)")
    assert [(r[0], r[1], r[2]) for r in rows] == _rows(PROVIDER_SETTINGS)


def test_readme_gateway_table_is_the_gateway_settings() -> None:
    rows = _readme_table("### Gateway (`pyfaasd gateway`)")
    assert [(r[0], r[1], r[2]) for r in rows] == _rows(GATEWAY_SETTINGS)


def test_readme_network_table_is_the_netconf_settings() -> None:
    rows = [r for r in _readme_table("### Network (`python -m netconf") if r[1]]  # --json has no variable
    assert [(r[1], r[0], r[2]) for r in rows] == _rows(NETCONF_SETTINGS)


def test_readme_names_the_flags_of_up() -> None:
    text = README.read_text()
    sentence = text[text.index("`pyfaasd up` reads the same variables") :].split(".")[0]
    assert re.findall(r"`(--[a-z-]+)`", sentence) == [s.flag for s in up.SETTINGS]


def _up_env(argv: list[str], env: dict[str, str]) -> dict[str, str]:
    parser = argparse.ArgumentParser()
    up.add_arguments(parser)
    return up.effective_env(parser.parse_args(argv), env)


def test_up_reuses_the_daemons_rows_under_its_own_flag_names() -> None:
    env = _up_env(
        ["--provider-addr", "0.0.0.0:9001", "--gateway-addr", "127.0.0.1:9000", "--state-dir", "/s"],
        {"PYFAASD_PROVIDER_ADDR": "127.0.0.1:1", "PYFAASD_LOG_LEVEL": "debug"},
    )
    provider, gateway = ProviderConfig.from_env(env), GatewayConfig.from_env(env)
    assert (provider.host, provider.port, gateway.host, gateway.port) == ("0.0.0.0", 9001, "127.0.0.1", 9000)
    assert gateway.provider.url == "http://127.0.0.1:9001"  # the gateway finds the provider where it listens
    assert provider.state_dir == gateway.state_dir == Path("/s")
    assert provider.log_level == gateway.log_level == "debug"


def test_up_keeps_an_explicit_provider_url() -> None:
    env = _up_env([], {"PYFAASD_PROVIDER_URL": "http://10.0.0.1:1"})
    assert GatewayConfig.from_env(env).provider.url == "http://10.0.0.1:1"
    assert GatewayConfig.from_env(_up_env([], {})).provider.url == defaults.PROVIDER_URL
