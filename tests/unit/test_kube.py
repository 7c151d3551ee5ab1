"""`image kube`: Kubernetes manifests, checked against Kubernetes' own OpenAPI schemas offline.

`kubernetes-validate` (a dev dependency) bundles the JSON schemas of every Kubernetes
release; validation reads them from the installed package, no network. Strict mode
refuses fields the schema does not know, so a misspelt key fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from installer.image.kube import KUBE_FILE, KubeRequest, kube_spec, write_kube
from installer.image.kube_manifests import kube_manifests, startup_seconds
from support.cli import cli_path, run

K8S = kubernetes_validate.latest_version()


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return run([cli_path(), *args], dict(os.environ, NO_COLOR="1"))


def _validate(manifests: list[dict[str, Any]]) -> None:
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S, strict=True)


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for m in manifests:
        kinds.setdefault(m["kind"], []).append(m)
    return kinds


def test_the_schemas_are_bundled_and_catch_a_wrong_manifest() -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "template": {}}}  # fmt: skip
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S, strict=True)
    typo = kube_manifests(kube_spec(KubeRequest(Path("/c"), "9.0", "13.0"), None, "0.1.0"))[2]
    typo["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S, strict=True)


@pytest.mark.parametrize("version", ["1.29", "1.33", K8S])
def test_gpu_manifests_are_valid_kubernetes(version: str) -> None:
    request = KubeRequest(Path("/ctx"), "9.0", "13.0", replicas=3, gpu_memory_gib=80,
                          gpu_products=("NVIDIA-H100-80GB-HBM3",))  # fmt: skip
    manifests = kube_manifests(kube_spec(request, None, "0.1.0"))
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_gpu_deployment_asks_what_the_device_plugin_needs() -> None:
    request = KubeRequest(Path("/ctx"), "9.0", "13.0", replicas=2, gpu_memory_gib=79.6,
                          gpu_products=("NVIDIA-H100-80GB-HBM3", "NVIDIA-H200"))  # fmt: skip
    kinds = _by_kind(kube_manifests(kube_spec(request, None, "0.1.0")))
    [deployment] = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expressions = {e["key"]: e for e in terms["nodeSelectorTerms"][0]["matchExpressions"]}
    assert expressions["nvidia.com/gpu.compute.major"]["values"] == ["9"]
    assert expressions["nvidia.com/gpu.compute.minor"]["values"] == ["0"]
    assert expressions["nvidia.com/gpu.memory"] == {
        "key": "nvidia.com/gpu.memory",
        "operator": "Gt",
        "values": ["81510"],
    }  # fmt: skip  (79.6 GiB = 81510.4 MiB: nodes with at least 81511 MiB)
    assert expressions["nvidia.com/gpu.product"]["values"] == [
        "NVIDIA-H100-80GB-HBM3", "NVIDIA-H200",
    ]  # fmt: skip
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/object_info", "port": "http"}
    startup = container["startupProbe"]
    window = startup["periodSeconds"] * startup["failureThreshold"]
    assert window >= 60 + 300 + 600, "the first tune (budget + its slack) and ComfyUI's start"
    assert window == startup_seconds(kube_spec(request, None, "0.1.0"))
    assert container["image"] == "comfy-install:0.1.0-cc9.0-cuda13.0"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_claims_models_shared_and_calibration() -> None:
    read_only = _by_kind(kube_manifests(kube_spec(KubeRequest(Path("/c"), "9.0"), None, "1")))
    models, tune = read_only["PersistentVolumeClaim"]
    assert (models["metadata"]["name"], models["spec"]["accessModes"]) == (
        "comfyui-models", ["ReadOnlyMany"],
    )  # fmt: skip
    assert (tune["metadata"]["name"], tune["spec"]["accessModes"]) == (
        "comfyui-tune", ["ReadWriteMany"],
    )  # fmt: skip
    pod = read_only["Deployment"][0]["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert (mounts["models"]["mountPath"], mounts["models"]["readOnly"]) == ("/models", True)
    assert mounts["tune"]["mountPath"] == "/var/lib/comfy-install/tune"
    assert pod["securityContext"]["runAsUser"] == 1000
    writable = KubeRequest(Path("/c"), "9.0", models_writable=True, storage_class="nfs")
    models = kube_manifests(kube_spec(writable, None, "1"))[0]
    assert models["spec"]["accessModes"] == ["ReadWriteMany"]
    assert models["spec"]["storageClassName"] == "nfs"
    [service] = read_only["Service"]
    assert service["spec"]["ports"][0]["port"] == 8188
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "comfyui"}


def test_a_cpu_image_asks_for_no_gpu() -> None:
    manifests = kube_manifests(kube_spec(KubeRequest(Path("/c"), "none"), None, "0.1.0"))
    _validate(manifests)
    pod = _by_kind(manifests)["Deployment"][0]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(pod)
    assert {"runtimeClassName", "tolerations", "affinity"}.isdisjoint(pod)
    assert pod["containers"][0]["image"] == "comfy-install:0.1.0-cpu"
    assert pod["containers"][0]["args"] == ["--cpu"]


def test_the_context_gives_tag_and_port_and_must_match_the_gpu(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    plan = {"tag": "registry.example/comfy:1", "port": 8288, "target": {"gpu": "8.9"}}
    (context / "image.json").write_text(json.dumps(plan))
    data = write_kube(KubeRequest(context, "8.9", "12.8", replicas=2))
    assert data["path"] == str(tmp_path / "ctx-kube" / KUBE_FILE)
    assert data["objects"] == [
        "PersistentVolumeClaim/comfyui-models", "PersistentVolumeClaim/comfyui-tune",
        "Deployment/comfyui", "Service/comfyui",
    ]  # fmt: skip
    written = list(yaml.safe_load_all(Path(data["path"]).read_text()))
    _validate(written)
    container = written[2]["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["ports"][0]["containerPort"]) == (
        "registry.example/comfy:1", 8288,
    )  # fmt: skip
    with pytest.raises(Exception) as caught:
        write_kube(KubeRequest(context, "9.0", "13.0"))
    assert "an image for GPU 8.9" in str(caught.value)


def test_the_command_writes_yaml_and_refuses_bad_options(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    done = run_cli(["image", "kube", str(context), "--gpu", "9.0", "--cuda-driver", "13.0",
                    "--replicas", "2", "--image", "ghcr.io/me/comfy:cc9.0", "--json"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)["data"]
    text = Path(data["path"]).read_text()
    assert text.startswith("# Written by `comfy-install image kube`")
    manifests = list(yaml.safe_load_all(text))
    _validate(manifests)
    assert manifests[2]["spec"]["replicas"] == 2
    assert not context.exists(), "the context folder itself is left alone"
    bad = run_cli(["image", "kube", str(context), "--gpu", "nine"])
    assert bad.returncode == 2
    assert "compute capability" in bad.stderr
    bad_name = run_cli(["image", "kube", str(context), "--gpu", "9.0", "--name", "Comfy_UI"])
    assert bad_name.returncode == 2
