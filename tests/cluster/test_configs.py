"""cluster/: launcher files valid against the JSON schema inside the `ray` package; KubeRay
manifests with the structure the operator needs and a Ray version matching the installed one."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
SCHEMA = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


@pytest.mark.parametrize("name", ["aws.yaml", "on-prem.yaml"])
def test_launcher_config_matches_rays_schema(name):
    config = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(config, SCHEMA)
    assert any("sweeper" in command for command in config["setup_commands"])
    # the dashboard is not opened to the network
    assert not any("0.0.0.0" in c for c in config["head_start_ray_commands"])


def test_aws_node_types_are_consistent():
    config = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert sum(t.get("max_workers", 0) for t in types.values()) <= config["max_workers"]


def _pod_specs(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [g["template"]["spec"] for g in groups]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifest_structure(name):
    manifest = yaml.safe_load((CLUSTER / "kuberay" / name).read_text())
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["metadata"]["name"]
    cluster = (
        manifest["spec"] if manifest["kind"] == "RayCluster" else manifest["spec"]["rayClusterSpec"]
    )
    assert cluster["rayVersion"] == ray.__version__
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["groupName"]
    for pod in _pod_specs(cluster):
        (container,) = pod["containers"]
        assert f"ray{ray.__version__}" in container["image"]
        assert container["resources"]["requests"] == container["resources"]["limits"]
    if manifest["kind"] == "RayJob":
        assert manifest["spec"]["entrypoint"].startswith("sweeper launch ")
        assert manifest["spec"]["shutdownAfterJobFinishes"] is True
    else:
        assert manifest["kind"] == "RayCluster"
