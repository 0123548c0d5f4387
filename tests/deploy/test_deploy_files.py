"""The cluster launcher files and the KubeRay RayService, checked without a cloud or a
Kubernetes cluster: the launcher files by Ray's own validation (what ``ray up`` runs before it
creates anything), the RayService against KubeRay's own CRD schema (its required fields and
every field's type, as ``kubectl apply`` checks them), and both for
what they must do (install the project, start the service from ``serve_app/config.yaml``)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from serve_app.guard import PROXY_CALLBACK, PROXY_CALLBACK_ENV
from tests.shared_data import REPO_ROOT

SERVE_CONFIG = REPO_ROOT / "serve_app" / "config.yaml"
CLUSTER_FILES = {
    "aws": REPO_ROOT / "cluster.yaml",
    "gcp": REPO_ROOT / "deploy" / "cluster-gcp.yaml",
}
NODE_ENV = REPO_ROOT / "deploy" / "node-env.sh"
RAYSERVICE = REPO_ROOT / "deploy" / "kuberay" / "rayservice.yaml"


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _ray_up_validation(config: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` does to a config before it talks to a cloud: fill in the provider's
    defaults (``prepare_config``) and validate the result against Ray's schema."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


# -- the cluster launcher ------------------------------------------------------------------


@pytest.mark.parametrize("cloud", sorted(CLUSTER_FILES))
def test_cluster_file_passes_rays_own_validation(cloud: str) -> None:
    config = _load(CLUSTER_FILES[cloud])
    assert config["provider"]["type"] == cloud
    prepared = _ray_up_validation(config)
    head = prepared["head_node_type"]
    assert head in prepared["available_node_types"]
    workers = [t for t in prepared["available_node_types"] if t != head]
    assert workers and prepared["available_node_types"][workers[0]]["min_workers"] >= 1


def test_rays_validation_refuses_a_broken_cluster_file() -> None:
    # The validation is live: a misspelt field is refused, as `ray up` would refuse it.
    config = _load(CLUSTER_FILES["aws"])
    worker = next(t for t in config["available_node_types"] if t != config["head_node_type"])
    config["available_node_types"][worker]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        _ray_up_validation(config)
    config = _load(CLUSTER_FILES["aws"])
    config["head_node_type"] = "no.such.type"
    with pytest.raises(ValueError, match="head_node_type"):
        _ray_up_validation(config)


@pytest.mark.parametrize("cloud", sorted(CLUSTER_FILES))
def test_cluster_file_installs_the_project_and_serves_it_on_the_head(cloud: str) -> None:
    config = _load(CLUSTER_FILES[cloud])
    # The checkout goes to every node, and every node installs it (with the Ray it pins).
    assert config["file_mounts"]["~/rlm-hypervisor"] == "."
    assert any("pip install" in c and "~/rlm-hypervisor" in c for c in config["setup_commands"])
    # The JWT secret is the same file on every node (any replica checks tokens).
    assert "~/rlm-secrets/jwt-secret" in config["file_mounts"]
    assert {"**/.venv", "**/.git", "**/node_modules"} <= set(config["rsync_exclude"])

    head = config["head_start_ray_commands"]
    starts = [i for i, c in enumerate(head) if "ray start --head" in c]
    serves = [i for i, c in enumerate(head) if "serve deploy serve_app/config.yaml" in c]
    assert starts and serves and starts[0] < serves[0], head
    # Ray and the service both start in the nodes' environment (settings, proxy guard).
    for command in (head[starts[0]], head[serves[0]], *config["worker_start_ray_commands"][1:]):
        assert command.startswith(". ~/rlm-hypervisor/deploy/node-env.sh;"), command
    assert any("--address=$RAY_HEAD_IP:6379" in c for c in config["worker_start_ray_commands"])


def test_aws_and_gcp_cluster_files_run_the_same_setup() -> None:
    aws, gcp = (_load(CLUSTER_FILES[c]) for c in ("aws", "gcp"))
    for key in (
        "file_mounts",
        "rsync_exclude",
        "setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    ):
        assert aws[key] == gcp[key], key


def test_node_environment_is_settings_the_service_accepts(tmp_path: Path) -> None:
    """deploy/node-env.sh, sourced as the launcher does, gives settings the service accepts
    in production (with the JWT secret file in place)."""
    secret = tmp_path / "rlm-secrets" / "jwt-secret"
    secret.parent.mkdir()
    secret.write_text(os.urandom(32).hex())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "RAY_SERVE_"))}
    env["HOME"] = str(tmp_path)
    check = (
        "from rlm.config import get_settings; from rlm.auth.keys import load_signing_key; "
        "s = get_settings(); load_signing_key(s.auth, s.state_dir, s.env); "
        "import json, os; print(json.dumps({'env': s.env, 'state': str(s.state_dir), "
        f"'guard': os.environ.get('{PROXY_CALLBACK_ENV}')}}))"
    )
    done = subprocess.run(
        ["bash", "-c", f'. "{NODE_ENV}" && "$0" -c "$1"', sys.executable, check],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "env": "production",
        "state": str(tmp_path / "rlm-state"),
        "guard": PROXY_CALLBACK,
    }


# -- KubeRay --------------------------------------------------------------------------------

#: KubeRay's own RayService CRD (``ray-operator/config/crd/bases/ray.io_rayservices.yaml`` of
#: ray-project/kuberay at tag v1.7.0, commit 59d663aeec13760646da3db9c1cf8cfe883e30b7; xz of the
#: file as published, sha256 below), what ``kubectl apply`` validates a RayService against.
RAYSERVICE_CRD = Path(__file__).with_name("data") / "ray.io_rayservices-v1.7.0.yaml.xz"
RAYSERVICE_CRD_SHA256 = "0a8fc325e6e22b9231c1f282b309555e2ecf94227ca20a03df3d1d9a403907ab"


@functools.cache
def _crd_schema() -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the CRD's served, stored version (``ray.io/v1``)."""
    raw = lzma.decompress(RAYSERVICE_CRD.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == RAYSERVICE_CRD_SHA256, "not KubeRay's file"
    crd = yaml.safe_load(raw)
    assert crd["spec"]["names"]["kind"] == "RayService"
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    assert version["name"] == "v1" and version["served"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _crd_validate(service: dict[str, Any]) -> None:
    """Validate as the API server does (OpenAPI v3.0 schemas are JSON Schema draft 4's
    keywords; the ``x-kubernetes-*`` extensions are annotations to a validator)."""
    jsonschema.Draft4Validator(_crd_schema()).validate(service)


def _rayservice() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(RAYSERVICE.read_text()) if d]
    services = [d for d in docs if d.get("kind") == "RayService"]
    assert len(services) == 1
    service: dict[str, Any] = services[0]
    return service


def test_rayservice_is_valid_against_kuberays_crd() -> None:
    service = _rayservice()
    assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    _crd_validate(service)
    # The fields the CRD requires are there (the validation above checks them; this names
    # them): spec.rayClusterConfig, its headGroupSpec.template, each worker group's groupName,
    # minReplicas, maxReplicas and template.
    schema = _crd_schema()["properties"]["spec"]
    assert schema["required"] == ["rayClusterConfig"]
    cluster = schema["properties"]["rayClusterConfig"]
    assert cluster["required"] == ["headGroupSpec"]
    assert cluster["properties"]["headGroupSpec"]["required"] == ["template"]
    workers = cluster["properties"]["workerGroupSpecs"]["items"]["required"]
    assert set(workers) == {"groupName", "minReplicas", "maxReplicas", "template"}
    # Optional in the CRD, but the point of a RayService: the Serve config it runs.
    assert isinstance(service["spec"]["serveConfigV2"], str)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("spec", "rayClusterConfig", "workerGroupSpecs", 0, "groupName"), "groupName"),
        (("spec", "rayClusterConfig", "workerGroupSpecs", 0, "maxReplicas"), "maxReplicas"),
        (("spec", "rayClusterConfig", "headGroupSpec", "template"), "template"),
        (("spec", "rayClusterConfig"), "rayClusterConfig"),
    ],
)
def test_the_crd_refuses_a_rayservice_missing_a_required_field(
    path: tuple[str | int, ...], message: str
) -> None:
    service = _rayservice()
    parent: Any = service
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    with pytest.raises(jsonschema.ValidationError, match=f"'{message}' is a required property"):
        _crd_validate(service)


def test_the_crd_refuses_a_field_of_the_wrong_type() -> None:
    service = _rayservice()
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    head["containers"][0]["ports"][0]["containerPort"] = "6379"
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        _crd_validate(service)
    service = _rayservice()
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        _crd_validate(service)


def test_rayservice_serves_the_same_serve_config() -> None:
    service = _rayservice()
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == _load(SERVE_CONFIG)


def test_rayservice_pods_run_ray_of_the_project_with_the_services_environment() -> None:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    pinned = next(
        line
        for line in (REPO_ROOT / "pyproject.toml").read_text().splitlines()
        if '"ray[serve]==' in line
    )
    assert f'=={cluster["rayVersion"]}"' in pinned
    templates = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]
    ]
    for template in templates:
        for container in template["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env[PROXY_CALLBACK_ENV] == PROXY_CALLBACK
            assert env["RLM_AUTH__SECRET_FILE"].startswith("/etc/rlm-secrets/")
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/etc/rlm-secrets" in mounts
    # The serve port of config.yaml is the one the head pod exposes.
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert ports["serve"] == _load(SERVE_CONFIG)["http_options"]["port"]
