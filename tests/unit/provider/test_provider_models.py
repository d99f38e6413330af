import argparse
import json
from datetime import UTC, datetime

import pytest

from netconf import NetConfig
from provider.__main__ import add_arguments, config_from
from provider.config import ProviderConfig, PullPolicy
from provider.container_spec import ReplicaSpec, container_config
from provider.errors import InvalidRequestError, LogRequestError
from provider.logs import LogRequest
from provider.models import FunctionDeployment, FunctionStatus, ScaleRequest, SecretRequest, format_time
from provider.quantity import memory_bytes, nano_cpus
from servicekit.settings import SettingError


@pytest.mark.parametrize(
    ("text", "expected"),
    [("128Mi", 128 * 2**20), ("1Gi", 2**30), ("1G", 10**9), ("500M", 500 * 10**6), ("67108864", 2**26), ("1e8", 10**8)],
)
def test_memory_quantities(text, expected):
    assert memory_bytes("limits.memory", text) == expected


@pytest.mark.parametrize(("text", "expected"), [("500m", 500_000_000), ("1", 10**9), ("0.25", 250_000_000)])
def test_cpu_quantities(text, expected):
    assert nano_cpus("limits.cpu", text) == expected


@pytest.mark.parametrize("text", ["", "lots", "12XB", "-1Mi", "1.5"])
def test_bad_memory_names_the_field(text):
    with pytest.raises(InvalidRequestError, match=r"limits\.memory"):
        memory_bytes("limits.memory", text)


def test_deployment_round_trips_through_the_label_with_omitempty():
    spec = FunctionDeployment.parse(
        {
            "service": "fn",
            "image": "img:1",
            "envVars": {"A": "1"},
            "labels": {"x": "y"},
            "annotations": {},
            "limits": {"memory": "128Mi"},
            "secrets": ["s", "s"],
        }
    )
    assert spec.secrets == ("s",)
    again = FunctionDeployment.from_label(spec.to_label())
    assert again == spec
    out = spec.to_json()
    assert "envProcess" not in out
    assert "readOnlyRootFilesystem" not in out
    assert out["annotations"] == {}


def test_status_json_is_go_shaped():
    spec = FunctionDeployment.parse({"service": "fn", "image": "img"})
    status = FunctionStatus(
        spec, replicas=0, available_replicas=0, created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert status.to_json() == {
        "name": "fn",
        "image": "img",
        "namespace": "openfaas-fn",
        "labels": {"faas_function": "fn"},  # as faas-netes adds it, and the OpenFaaS certifier expects
        "annotations": {},
        "createdAt": "2026-01-02T03:04:05Z",
    }
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2026-01-02T03:04:05.12Z"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"image": "i"}, "service is required"),
        ({"service": "fn"}, "image is required"),
        ({"service": "fn", "image": "a b"}, "whitespace"),
        ({"service": "-fn", "image": "i"}, "not a valid name"),
        ({"service": "fn", "image": "i", "envVars": ["A"]}, "envVars"),
        ({"service": "fn", "image": "i", "envVars": {"A=B": "x"}}, "not a valid environment variable"),
        ({"service": "fn", "image": "i", "limits": {"disk": "1"}}, "limits.disk"),
        ({"service": "fn", "image": "i", "readOnlyRootFilesystem": "yes"}, "readOnlyRootFilesystem"),
        ({"service": "fn", "image": "i", "secrets": ["../x"]}, "may not contain"),
    ],
)
def test_bad_deployments(body, message):
    with pytest.raises(InvalidRequestError, match=message):
        FunctionDeployment.parse(body)


def test_scale_request_rules():
    assert ScaleRequest.parse({"replicas": 3}, "fn", None, 10).replicas == 3
    assert ScaleRequest.parse({"replicas": 0, "namespace": "dev"}, "fn", "x", 10).namespace == "dev"
    assert ScaleRequest.parse({"replicas": 1}, "fn", "dev", 10).namespace == "dev"
    for bad in ({"replicas": -1}, {"replicas": 11}, {"replicas": True}, {"replicas": 1, "serviceName": "other"}):
        with pytest.raises(InvalidRequestError):
            ScaleRequest.parse(bad, "fn", None, 10)


def test_secret_raw_value_wins():
    secret = SecretRequest.parse({"name": "s", "value": "v", "rawValue": "aGk="}, need_value=True)
    assert secret.value == b"hi"


def test_log_request_parsing():
    request = LogRequest.parse(
        {"name": "fn", "tail": "-1", "follow": "true", "since": "2026-01-02T03:04:05.123456789Z"}
    )
    assert (request.tail, request.follow, request.namespace) == (None, True, "openfaas-fn")
    assert request.since == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    for bad in ({"name": "fn", "tail": "x"}, {"name": "fn", "since": "now"}, {"name": "fn", "follow": "yes"}, {}):
        with pytest.raises(LogRequestError):
            LogRequest.parse(bad)


def test_container_config_env_labels_and_hardening(tmp_path):
    config = ProviderConfig(net=NetConfig(state_dir=tmp_path))
    spec = FunctionDeployment.parse(
        {"service": "fn", "image": "img", "envProcess": "cat", "envVars": {"fprocess": "ignored", "K": "v"}}
    )
    cfg = container_config(ReplicaSpec(spec, 2, "abcdef0123", "2026-01-01T00:00:00Z"), config, {"s": tmp_path / "s"})
    assert "fprocess=cat" in cfg["Env"]
    assert "fprocess=ignored" not in cfg["Env"]
    assert "healthcheck_interval=1s" in cfg["Env"]
    labels = cfg["Labels"]
    assert labels["com.pyfaasd.replica"] == "2"
    assert labels["com.pyfaasd.bridge"] == "pyfaasd0"
    assert json.loads(labels["com.pyfaasd.spec"])["envProcess"] == "cat"
    host = cfg["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert f"{tmp_path / 's'}:/var/openfaas/secrets/s:ro" in host["Binds"]
    assert "ReadonlyRootfs" not in host


def test_provider_config_from_env_and_flags():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from(
        parser.parse_args(["--listen", "127.0.0.1:9"]),  # --max-replicas not given: the environment's
        {"PYFAASD_PULL_POLICY": "Always", "PYFAASD_MAX_REPLICAS": "5", "PYFAASD_READY_TIMEOUT": "1m"},
    )
    assert config.pull_policy is PullPolicy.ALWAYS
    assert (config.max_replicas, config.ready_timeout_s, config.port) == (5, 60.0, 9)
    with pytest.raises(SettingError, match="PYFAASD_PULL_POLICY"):
        ProviderConfig.from_env({"PYFAASD_PULL_POLICY": "sometimes"})
