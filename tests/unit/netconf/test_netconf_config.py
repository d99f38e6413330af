"""Settings, derived names and the CLI's handling of bad settings (no root needed)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from netconf.__main__ import main
from netconf.config import NetConfig, mac_for
from netconf.errors import ConfigError
from netconf.firewall import chains_for, jumps_for, rules_for
from netconf.network import host_ifname


def test_from_env_empty_gives_architecture_defaults() -> None:
    cfg = NetConfig.from_env({})
    assert cfg.bridge == "pyfaasd0"
    assert cfg.subnet == IPv4Network("10.62.0.0/16")
    assert cfg.state_dir == Path("/var/lib/pyfaasd")
    assert cfg.bridge_ip == IPv4Address("10.62.0.1")
    assert str(cfg.bridge_interface) == "10.62.0.1/16"
    assert cfg.hosts_path == Path("/var/lib/pyfaasd/hosts")
    assert cfg.ipam_path == Path("/var/lib/pyfaasd/ipam/pyfaasd0.json")


def test_from_env_overrides() -> None:
    cfg = NetConfig.from_env(
        {"PYFAASD_BRIDGE": "pft1", "PYFAASD_SUBNET": "10.201.3.0/24", "PYFAASD_STATE_DIR": "/tmp/x"}
    )
    assert (cfg.bridge, cfg.subnet, cfg.state_dir) == ("pft1", IPv4Network("10.201.3.0/24"), Path("/tmp/x"))
    assert cfg.bridge_ip == IPv4Address("10.201.3.1")


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"PYFAASD_SUBNET": "10.62.0.1/16"}, "PYFAASD_SUBNET"),
        ({"PYFAASD_SUBNET": "fd00::/64"}, "PYFAASD_SUBNET"),
        ({"PYFAASD_SUBNET": "10.62.0.0/31"}, "PYFAASD_SUBNET"),
        ({"PYFAASD_SUBNET": "nonsense"}, "PYFAASD_SUBNET"),
        ({"PYFAASD_BRIDGE": "a-name-that-is-too-long"}, "PYFAASD_BRIDGE"),
        ({"PYFAASD_BRIDGE": "br 0"}, "PYFAASD_BRIDGE"),
        ({"PYFAASD_BRIDGE": "-br"}, "PYFAASD_BRIDGE"),
    ],
    ids=["host-bits", "ipv6", "too-small", "nonsense", "long-bridge", "space", "leading-dash"],
)
def test_from_env_bad_value_raises_config_error_naming_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        NetConfig.from_env(env)


def test_mac_for_is_locally_administered_and_embeds_the_ip() -> None:
    mac = mac_for(IPv4Address("10.62.1.2"))
    assert mac == "0a:58:0a:3e:01:02"
    first = int(mac[:2], 16)
    assert first & 0b10  # locally administered
    assert not first & 0b1  # unicast


def test_host_ifname_fits_ifnamsiz_and_is_unique_per_ip() -> None:
    assert host_ifname(IPv4Address("10.62.0.2")) == "vpf0a3e0002"
    assert len(host_ifname(IPv4Address("255.255.255.255"))) <= 15


def test_chains_for_longest_bridge_name_fit_iptables_limit() -> None:
    chains = chains_for("a" * 15)
    assert len(chains.forward) <= 28
    assert len(chains.nat) <= 28
    assert chains_for("pyfaasd0").forward == "PYFAASD-FWD-pyfaasd0"


def test_rules_for_accept_bridge_traffic_and_masquerade_leaving_subnet() -> None:
    specs = [r.spec() for r in rules_for("pft1", IPv4Network("10.201.3.0/24"))]
    assert specs == [
        "-t filter -A PYFAASD-FWD-pft1 -i pft1 -o pft1 -j ACCEPT",
        "-t filter -A PYFAASD-FWD-pft1 -o pft1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-t filter -A PYFAASD-FWD-pft1 -i pft1 ! -o pft1 -j ACCEPT",
        "-t nat -A PYFAASD-NAT-pft1 -s 10.201.3.0/24 ! -o pft1 -j MASQUERADE",
    ]
    assert [j.spec() for j in jumps_for("pft1")] == [
        "-t filter -A FORWARD -j PYFAASD-FWD-pft1",
        "-t nat -A POSTROUTING -j PYFAASD-NAT-pft1",
    ]


def test_cli_bad_subnet_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--subnet", "10.62.0.0/33"], env={}) == 2
    assert "PYFAASD_SUBNET" in capsys.readouterr().err


def test_cli_bad_env_bridge_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"], env={"PYFAASD_BRIDGE": "x" * 16}) == 2
    assert "PYFAASD_BRIDGE" in capsys.readouterr().err
