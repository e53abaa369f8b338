"""Tier 1: the cluster configs under cluster/ validate against Ray's launcher schema and the vendored
KubeRay CRD subset (tests/data/kuberay/), and keep the groups the docs promise; the entrypoints in
them parse as raytrain configs."""

import copy
import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from raytrain.config import load_config

REPO = Path(__file__).resolve().parents[1]
CRDS = json.loads((REPO / "tests/data/kuberay/kuberay-v1.7.0-crd-subset.json").read_text())


def _launcher() -> dict:
    return yaml.safe_load((REPO / "cluster/aws.yaml").read_text())


def _validate_launcher(cfg: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))  # fills Ray's AWS defaults; a raw YAML lacks them
    validate_config(prepared)
    return prepared


def test_aws_launcher_config_passes_rays_schema():
    prepared = _validate_launcher(_launcher())
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and types["head"]["resources"] == {"CPU": 0}
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith(("g", "p"))
    assert types["cpu_decode"]["resources"]["decode"] > 0
    starts = " ".join(prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"])
    assert starts.count("RAY_AUTH_MODE=token") == 2  # token auth on every node


def test_launcher_schema_check_catches_a_typo():
    cfg = _launcher()
    cfg["available_node_types"]["cpu_decode"]["resourcez"] = {"decode": 1}
    with pytest.raises(jsonschema.ValidationError, match="resourcez"):
        _validate_launcher(cfg)


def _manifest(name: str) -> dict:
    return yaml.safe_load((REPO / "cluster/kuberay" / name).read_text())


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests_match_the_crd_schema(name):
    doc = _manifest(name)
    assert CRDS["kuberayVersion"] == "v1.7.0"
    jsonschema.validate(doc, CRDS["schemas"][doc["kind"]])


def _cluster_spec(doc: dict) -> dict:
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_groups(name):
    spec = _cluster_spec(_manifest(name))
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"gpu-workers", "cpu-decode"}
    gpu_pod = groups["gpu-workers"]["template"]["spec"]
    assert gpu_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu_pod["tolerations"])
    assert groups["cpu-decode"]["resources"]["decode"]
    assert "nvidia.com/gpu" not in json.dumps(groups["cpu-decode"])
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in groups.values()]
    for pod in pods:  # /dev/shm as a memory emptyDir everywhere (Ray's object store)
        shm = {v["name"] for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"}
        mounts = {m["name"] for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm"}
        assert shm and mounts == shm


def test_rayjob_carries_the_raycluster_spec_and_a_valid_entrypoint():
    job, cluster = _manifest("rayjob.yaml"), _manifest("raycluster.yaml")
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["raytrain", "train"] and argv[2] == "--config"
    cfg = load_config(REPO / argv[3], argv[4:])
    assert cfg.run.storage_path.startswith("s3://") and cfg.data.decode_resource == "decode"
    assert cfg.scaling.placement_strategy == "SPREAD" and cfg.scaling.use_gpu
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["RAY_DATA_USE_DATASOURCE_V2"] == "0"


def test_kuberay_schema_catches_typos_and_bad_values():
    doc = _manifest("raycluster.yaml")
    bad = copy.deepcopy(doc)
    bad["spec"]["workerGroupSpecs"][0]["minReplica"] = 0  # typo
    with pytest.raises(jsonschema.ValidationError, match="minReplica"):
        jsonschema.validate(bad, CRDS["schemas"]["RayCluster"])
    bad = copy.deepcopy(doc)
    bad["spec"]["authOptions"]["mode"] = "Token"  # the CRD's enum is lower case
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, CRDS["schemas"]["RayCluster"])
    bad = copy.deepcopy(doc)
    del bad["spec"]["workerGroupSpecs"][1]["groupName"]  # required
    with pytest.raises(jsonschema.ValidationError, match="groupName"):
        jsonschema.validate(bad, CRDS["schemas"]["RayCluster"])
