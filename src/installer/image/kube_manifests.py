"""Kubernetes manifests of an image: a Deployment, its volumes and its Service. Pure: no I/O.

[`kube_manifests`][installer.image.kube_manifests.kube_manifests] turns a
[`KubeSpec`][installer.image.kube_manifests.KubeSpec] (the image, its target GPU,
replicas, volumes) into plain data, one dict per object, in the order they are
applied:

- a PersistentVolumeClaim for the models (`/models`), shared by every replica:
  `ReadOnlyMany` when the models are put there from outside, `ReadWriteMany` when
  downloads run inside the pods (`--models-writable`);
- a PersistentVolumeClaim for the calibration (the image's tune volume,
  `ReadWriteMany`): the first replica that starts on a GPU measures it (`tune`, at
  most `COMFY_TUNE_BUDGET` seconds) and the others copy it;
- a Deployment: one GPU per pod (`nvidia.com/gpu: 1` in the limits, the extended
  resource the NVIDIA device plugin announces), the `nvidia` runtime class (the
  GPU Operator's and the device plugin's setup register one where containerd's
  default runtime does not expose GPUs), a toleration of the `nvidia.com/gpu`
  taint GPU node pools carry, and node affinity on the labels GPU feature
  discovery puts on nodes: `nvidia.com/gpu.compute.major/minor` for the
  compute capability the image was planned for, `nvidia.com/gpu.memory` (MiB) for
  the GPU memory the models need, `nvidia.com/gpu.product` for named products.
  Probes on `GET /object_info`: a startup probe long enough for the first tune
  and ComfyUI's start, then readiness and liveness. Updates replace one pod at a
  time without a surge (a surge would need a spare GPU);
- a Service in front of the pods, on the image's port.

A CPU image (`--gpu none`) gets the same objects without GPU resources, runtime
class, tolerations or GPU affinity, and ComfyUI's `--cpu` as the container's
arguments (that is what `podman kube play` runs in the real image test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource the NVIDIA device plugin announces, one per GPU."""
GPU_TAINT = "nvidia.com/gpu"
"""The taint GPU node pools carry (GKE, AKS, the GPU Operator's guides); tolerated."""
RUNTIME_CLASS = "nvidia"
"""The RuntimeClass the NVIDIA GPU Operator and container toolkit register."""
LABEL_CC_MAJOR = "nvidia.com/gpu.compute.major"
LABEL_CC_MINOR = "nvidia.com/gpu.compute.minor"
LABEL_MEMORY = "nvidia.com/gpu.memory"
"""GPU feature discovery's label of a node's GPU memory, in MiB."""
LABEL_PRODUCT = "nvidia.com/gpu.product"
"""GPU feature discovery's product label, e.g. `NVIDIA-H100-80GB-HBM3`."""
TUNE_MODULE_SLACK_S = 300
"""`tune` gives its measuring module this much past its budget (`measure.tune.run_tune`)."""
LAUNCH_TIMEOUT_S = 600
"""`launch` waits this long for `/object_info` (its default `--timeout`)."""
PROBE_PERIOD_S = 10

AccessMode = Literal["ReadOnlyMany", "ReadWriteMany"]


@dataclass(frozen=True)
class KubeSpec:
    """What the manifests describe: the image, its target, the replicas and volumes."""

    name: str
    image: str
    gpu: str
    """The target's compute capability (`9.0`), or `none` for a CPU image."""
    port: int
    models_dir: str
    tune_dir: str
    uid: int
    replicas: int = 1
    cuda_driver: str | None = None
    models_access: AccessMode = "ReadOnlyMany"
    models_size: str = "200Gi"
    tune_size: str = "1Gi"
    gpu_memory_gib: float | None = None
    """GPU memory the models need; nodes with less are not chosen."""
    gpu_products: tuple[str, ...] = ()
    runtime_class: str | None = RUNTIME_CLASS
    storage_class: str | None = None
    tune_budget_s: int = 60
    cpu_request: str = "2"
    memory_request: str = "16Gi"
    labels: tuple[tuple[str, str], ...] = ()
    """Extra labels of every object (the image's target, the tool's version)."""

    @property
    def has_gpu(self) -> bool:
        """True unless the image is for the CPU."""
        return self.gpu != "none"


def startup_seconds(spec: KubeSpec) -> int:
    """Return how long the startup probe waits: the first tune, then ComfyUI's start.

    Args:
        spec: The manifests' spec (its tune budget; a CPU image measures nothing).
    """
    tune = spec.tune_budget_s + TUNE_MODULE_SLACK_S if spec.has_gpu else 0
    return tune + LAUNCH_TIMEOUT_S


def _labels(spec: KubeSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.name, **dict(spec.labels)}


def _claim(spec: KubeSpec, name: str, mode: AccessMode, size: str) -> dict[str, Any]:
    claim_spec: dict[str, Any] = {
        "accessModes": [mode],
        "resources": {"requests": {"storage": size}},
    }
    if spec.storage_class:
        claim_spec["storageClassName"] = spec.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": _labels(spec)},
        "spec": claim_spec,
    }


def _probe(path: str, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def node_affinity(spec: KubeSpec) -> dict[str, Any] | None:
    """Return the node affinity that picks nodes whose GPUs fit the image, or None (CPU).

    Args:
        spec: The manifests' spec (compute capability, GPU memory, products).
    """
    if not spec.has_gpu:
        return None
    major, minor = spec.gpu.split(".")
    terms: list[dict[str, Any]] = [
        {"key": LABEL_CC_MAJOR, "operator": "In", "values": [major]},
        {"key": LABEL_CC_MINOR, "operator": "In", "values": [minor]},
    ]
    if spec.gpu_memory_gib:
        mib = math.ceil(spec.gpu_memory_gib * 1024)
        terms.append({"key": LABEL_MEMORY, "operator": "Gt", "values": [str(mib - 1)]})
    if spec.gpu_products:
        terms.append({"key": LABEL_PRODUCT, "operator": "In", "values": list(spec.gpu_products)})
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": terms}]
            }
        }
    }


def _container(spec: KubeSpec) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": spec.cpu_request, "memory": spec.memory_request}
    limits: dict[str, Any] = {"memory": spec.memory_request}
    if spec.has_gpu:
        requests[GPU_RESOURCE] = 1
        limits[GPU_RESOURCE] = 1
    startup = math.ceil(startup_seconds(spec) / PROBE_PERIOD_S)
    container: dict[str, Any] = {
        "name": "comfyui",
        "image": spec.image,
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": [
            {"name": "COMFY_TUNE_BUDGET", "value": str(spec.tune_budget_s)},
            {"name": "COMFY_TUNE_AT_START", "value": "1" if spec.has_gpu else "0"},
        ],
        "resources": {"requests": requests, "limits": limits},
        "volumeMounts": [
            {
                "name": "models",
                "mountPath": spec.models_dir,
                "readOnly": spec.models_access == "ReadOnlyMany",
            },
            {"name": "tune", "mountPath": spec.tune_dir},
        ],
        "startupProbe": _probe("/object_info", PROBE_PERIOD_S, 10, startup),
        "readinessProbe": _probe("/object_info", PROBE_PERIOD_S, 10, 3),
        "livenessProbe": _probe("/object_info", 30, 10, 3),
    }
    if not spec.has_gpu:
        container["args"] = ["--cpu"]  # after the entrypoint's `--`: ComfyUI's own option
    return container


def _deployment(spec: KubeSpec, models: str, tune: str) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "securityContext": {
            "runAsUser": spec.uid,
            "runAsGroup": spec.uid,
            "fsGroup": spec.uid,
            "runAsNonRoot": True,
        },
        "containers": [_container(spec)],
        "volumes": [
            {
                "name": "models",
                "persistentVolumeClaim": {
                    "claimName": models,
                    "readOnly": spec.models_access == "ReadOnlyMany",
                },
            },
            {"name": "tune", "persistentVolumeClaim": {"claimName": tune}},
        ],
    }
    if spec.has_gpu:
        if spec.runtime_class:
            pod["runtimeClassName"] = spec.runtime_class
        pod["tolerations"] = [{"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
        pod["affinity"] = node_affinity(spec)
    selector = {"app.kubernetes.io/name": spec.name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "labels": _labels(spec)},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            },
            "template": {"metadata": {"labels": _labels(spec)}, "spec": pod},
        },
    }


def _service(spec: KubeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "labels": _labels(spec)},
        "spec": {
            "selector": {"app.kubernetes.io/name": spec.name},
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def kube_manifests(spec: KubeSpec) -> list[dict[str, Any]]:
    """Return the manifests in the order to apply them: two claims, the Deployment, the Service.

    Args:
        spec: The image, its target, the replicas and the volumes.
    """
    models, tune = f"{spec.name}-models", f"{spec.name}-tune"
    return [
        _claim(spec, models, spec.models_access, spec.models_size),
        _claim(spec, tune, "ReadWriteMany", spec.tune_size),
        _deployment(spec, models, tune),
        _service(spec),
    ]
