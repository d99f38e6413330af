"""The Swarm service spec of a function (provider/swarm_spec.py) and the backend setting."""

from __future__ import annotations

from typing import Any

import pytest

from provider.config import Backend, ProviderConfig
from provider.models import FunctionDeployment
from provider.swarm_secrets import swarm_secret_name
from provider.swarm_spec import LABEL_NETWORK, SecretMount, service_name, service_spec, with_replicas, with_secret
from provider.volumes import NfsShare, ResolvedMount, Volume
from servicekit.settings import SettingError

CONFIG = ProviderConfig(swarm_network="fnnet", pids_limit=256, stop_timeout_s=5.0)


def spec_of(**body: object) -> FunctionDeployment:
    return FunctionDeployment.parse({"service": "echo", "image": "pyfaasd/fn-echo-http", **body})


def test_a_function_is_a_replicated_dnsrr_service_on_the_overlay_with_its_labels() -> None:
    spec = spec_of(labels={"app": "x"}, envProcess="cat", envVars={"K": "v"}, constraints=["node.role == worker"])
    out = service_spec(spec, CONFIG, replicas=3, created="2026-12-02T00:00:00Z", generation="g1")
    assert out["Name"] == "openfaas-fn_echo" == service_name("openfaas-fn", "echo")
    assert out["Mode"] == {"Replicated": {"Replicas": 3}}
    assert out["EndpointSpec"] == {"Mode": "dnsrr"}
    assert out["UpdateConfig"]["Order"] == "start-first"
    template = out["TaskTemplate"]
    assert template["Networks"] == [{"Target": "fnnet", "Aliases": ["echo"]}]
    assert template["Placement"] == {"Constraints": ["node.role == worker"]}
    labels = out["Labels"]
    assert labels["app"] == "x"
    assert labels[LABEL_NETWORK] == "fnnet"
    assert labels["com.pyfaasd.function"] == "echo"
    assert labels["com.pyfaasd.namespace"] == "openfaas-fn"
    assert FunctionDeployment.from_label(labels["com.pyfaasd.spec"]) == spec
    container = template["ContainerSpec"]
    assert container["Labels"] == labels
    assert "fprocess=cat" in container["Env"]
    assert "K=v" in container["Env"]
    assert container["StopGracePeriod"] == 5_000_000_000
    assert template["Resources"]["Limits"] == {"Pids": 256}


def test_limits_and_requests_become_task_resources() -> None:
    spec = spec_of(limits={"memory": "128Mi", "cpu": "500m"}, requests={"memory": "64Mi"}, readOnlyRootFilesystem=True)
    out = service_spec(spec, CONFIG, replicas=1, created="c", generation="g")
    resources = out["TaskTemplate"]["Resources"]
    assert resources["Limits"] == {"MemoryBytes": 128 * 2**20, "NanoCPUs": 500_000_000, "Pids": 256}
    assert resources["Reservations"] == {"MemoryBytes": 64 * 2**20}
    assert out["TaskTemplate"]["ContainerSpec"]["ReadOnly"] is True


def test_with_replicas_changes_only_the_count() -> None:
    out = service_spec(spec_of(), CONFIG, replicas=1, created="c", generation="g")
    scaled = with_replicas(out, 0)
    assert scaled["Mode"] == {"Replicated": {"Replicas": 0}}
    assert {k: v for k, v in scaled.items() if k != "Mode"} == {k: v for k, v in out.items() if k != "Mode"}


def test_the_backend_setting() -> None:
    assert ProviderConfig.from_env({}).backend is Backend.DOCKER
    config = ProviderConfig.from_env({"PYFAASD_BACKEND": "Swarm", "PYFAASD_SWARM_NETWORK": "n1"})
    assert (config.backend, config.swarm_network) == (Backend.SWARM, "n1")
    with pytest.raises(SettingError, match="PYFAASD_BACKEND"):
        ProviderConfig.from_env({"PYFAASD_BACKEND": "kubernetes"})


def test_secrets_are_mounted_where_functions_read_them_for_the_secrets_group() -> None:
    mount = SecretMount("id1", "openfaas-fn_db_0123456789abcdef", "db")
    out = service_spec(spec_of(secrets=["db"]), CONFIG, replicas=1, created="c", generation="g", secrets=[mount])
    container = out["TaskTemplate"]["ContainerSpec"]
    assert container["Groups"] == [str(CONFIG.secrets_gid)]
    assert container["Secrets"] == [
        {
            "SecretID": "id1",
            "SecretName": "openfaas-fn_db_0123456789abcdef",
            "File": {"Name": "/var/openfaas/secrets/db", "UID": "0", "GID": str(CONFIG.secrets_gid), "Mode": 0o440},
        }
    ]
    moved = with_secret(out, "id1", SecretMount("id2", "openfaas-fn_db_fedcba9876543210", "db"), CONFIG.secrets_gid)
    assert [ref["SecretID"] for ref in moved["TaskTemplate"]["ContainerSpec"]["Secrets"]] == ["id2"]
    assert out["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"] == "id1"  # the original is unchanged


def test_swarm_secret_names_fit_swarms_limit_and_change_with_the_value() -> None:
    long = swarm_secret_name("n" * 63, "s" * 63, b"v")
    assert len(long) <= 64
    assert swarm_secret_name("ns", "db", b"one") != swarm_secret_name("ns", "db", b"two")
    assert swarm_secret_name("ns", "db", b"one").startswith("ns_db_")


def _volume_mount(kind: str, *, read_only: bool = False, **fields: Any) -> ResolvedMount:
    volume = Volume(name="data", type=kind, docker_name="pyfaasd-fnnet-data", created="c", **fields)
    return ResolvedMount(volume, "/data", read_only)


def test_a_named_volume_is_a_volume_mount_of_the_local_driver_labelled_for_the_instance() -> None:
    out = service_spec(spec_of(), CONFIG, replicas=1, created="c", generation="g", volumes=[_volume_mount("local")])
    assert out["TaskTemplate"]["ContainerSpec"]["Mounts"] == [
        {
            "Type": "volume",
            "Source": "pyfaasd-fnnet-data",
            "Target": "/data",
            "ReadOnly": False,
            "VolumeOptions": {
                "Labels": {LABEL_NETWORK: "fnnet", "com.pyfaasd.volume": "data", "com.pyfaasd.volume.type": "local"},
                "DriverConfig": {"Name": "local"},
            },
        }
    ]


def test_an_nfs_volume_carries_the_driver_options_so_every_node_mounts_the_share() -> None:
    """Only at the spec level: this machine's kernel has no NFS client (docs/swarm.md)."""
    nfs = NfsShare("10.0.0.5", "/exports/fn", "nfsvers=4,soft")
    mount = _volume_mount("nfs", read_only=True, nfs=nfs)
    out = service_spec(
        spec_of(readOnlyRootFilesystem=True), CONFIG, replicas=1, created="c", generation="g", volumes=[mount]
    )
    mounts = out["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert mounts[0]["ReadOnly"] is True
    assert mounts[0]["VolumeOptions"]["DriverConfig"] == {
        "Name": "local",
        "Options": {"type": "nfs", "o": "addr=10.0.0.5,nfsvers=4,soft", "device": ":/exports/fn"},
    }
    assert mounts[0]["VolumeOptions"]["DriverConfig"]["Options"] == nfs.driver_options()  # as the docker backend
    assert mounts[1]["Type"] == "tmpfs"  # the read-only root's /tmp as before


def test_a_host_directory_volume_binds_the_directory_on_the_node() -> None:
    out = service_spec(
        spec_of(), CONFIG, replicas=1, created="c", generation="g", volumes=[_volume_mount("host", host_path="/srv/fn")]
    )
    driver = out["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["VolumeOptions"]["DriverConfig"]
    assert driver == {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/srv/fn"}}


def test_no_volume_no_mounts() -> None:
    out = service_spec(spec_of(), CONFIG, replicas=1, created="c", generation="g")
    assert "Mounts" not in out["TaskTemplate"]["ContainerSpec"]


def test_operator_defaults_apply_to_services_and_are_recorded_as_the_docker_backend_records_them() -> None:
    config = ProviderConfig(
        swarm_network="fnnet",
        default_memory_bytes=256 << 20,
        default_nano_cpus=500_000_000,
        default_read_only_root=True,
    )

    def made(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        out = service_spec(spec_of(**body), config, replicas=1, created="c", generation="g")
        return out["TaskTemplate"], out["Labels"]

    template, labels = made({})
    limits = template["Resources"]["Limits"]
    assert (limits["MemoryBytes"], limits["NanoCPUs"], template["ContainerSpec"]["ReadOnly"]) == (
        256 << 20,
        500_000_000,
        True,
    )
    assert [m["Target"] for m in template["ContainerSpec"]["Mounts"]] == ["/tmp"]
    assert labels["com.pyfaasd.defaults"] == f"memory={256 << 20},nanocpus=500000000,read-only-root"
    assert template["ContainerSpec"]["Labels"]["com.pyfaasd.defaults"] == labels["com.pyfaasd.defaults"]
    template, labels = made({"limits": {"memory": "64Mi"}, "annotations": {"com.pyfaasd.writable-root": "true"}})
    assert template["Resources"]["Limits"]["MemoryBytes"] == 64 << 20
    assert "ReadOnly" not in template["ContainerSpec"]
    assert labels["com.pyfaasd.defaults"] == "nanocpus=500000000"
    _, labels = made({"limits": {"memory": "64Mi", "cpu": "1"}, "readOnlyRootFilesystem": True})
    assert "com.pyfaasd.defaults" not in labels
    # the API still answers what was deployed
    assert FunctionDeployment.from_label(labels["com.pyfaasd.spec"]).limits is not None
