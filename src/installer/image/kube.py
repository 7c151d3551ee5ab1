"""What `image kube` does below its parsing: Kubernetes manifests next to a build context.

[`write_kube`][installer.image.kube.write_kube] describes the image of the context
in DIR (its `image.json`, when `image context` or `image build` wrote one: tag, port,
target; else the tag `image build` would give it), makes the manifests
([`installer.image.kube_manifests`][installer.image.kube_manifests]) and writes them
as one YAML file, `DIR-kube/comfyui.yaml` beside DIR (the context folder itself is
replaced whole by each `image context`). YAML because that is what people read,
edit and `kubectl apply`; PyYAML writes it, so strings like `on`, `1.0` or `a: b`
are quoted as YAML needs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.core.errors import EnvironmentUnsupportedError, UsageError
from installer.image.containerfile import (
    DEFAULT_PORT,
    IMAGE_PLAN_FILE,
    LABEL_PREFIX,
    MODELS_DIR,
    TUNE_DIR,
    UID,
    ImageTarget,
    default_tag,
)
from installer.image.kube_manifests import KubeSpec, kube_manifests, startup_seconds

KUBE_FILE = "comfyui.yaml"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?")
_SIZE = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")


@dataclass(frozen=True)
class KubeRequest:
    """The options of `image kube`."""

    directory: Path
    gpu: str
    cuda_driver: str | None = None
    replicas: int = 1
    image: str | None = None
    port: int | None = None
    name: str = "comfyui"
    output: Path | None = None
    models_writable: bool = False
    models_size: str = "200Gi"
    gpu_memory_gib: float | None = None
    gpu_products: tuple[str, ...] = ()
    runtime_class: str | None = "nvidia"
    storage_class: str | None = None
    tune_budget_s: int = 60


def kube_dir(request: KubeRequest) -> Path:
    """Return where the manifests go: `--output`, else `DIR-kube` beside the context DIR.

    Args:
        request: The command's options.
    """
    if request.output is not None:
        return request.output.expanduser().absolute()
    directory = request.directory.expanduser().absolute()
    return directory.with_name(f"{directory.name}-kube")


def _context_plan(directory: Path) -> dict[str, Any] | None:
    path = directory / IMAGE_PLAN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{path} cannot be read as the plan of an image ({exc}).",
            f"Write the context again: `comfy-install image context {directory} --gpu ...`.",
        ) from None
    return data if isinstance(data, dict) else None


def _check(request: KubeRequest, gpu: str) -> None:
    if gpu != "none" and not re.fullmatch(r"[0-9]+\.[0-9]+", gpu):
        raise UsageError(
            f"--gpu {request.gpu}: expected a compute capability like 9.0, or none.",
            "Name the GPU of the nodes the pods run on.",
        )
    if not _NAME.fullmatch(request.name):
        raise UsageError(
            f"--name {request.name!r} is not a Kubernetes name (lower-case letters, digits, "
            "'-', at most 52).",
            "For example --name comfyui.",
        )
    if request.replicas < 1:
        raise UsageError("--replicas must be 1 or more.", "For example --replicas 2.")
    if not _SIZE.fullmatch(request.models_size):
        raise UsageError(
            f"--models-size {request.models_size!r} is not a Kubernetes quantity.",
            "For example --models-size 500Gi.",
        )


def kube_spec(request: KubeRequest, context: dict[str, Any] | None, tool_version: str) -> KubeSpec:
    """Return the manifests' spec from the options and the context's image plan.

    Args:
        request: The command's options.
        context: The context's `image.json`, if there is one.
        tool_version: This tool's version (the default tag).

    Raises:
        UsageError: A bad option, or a `--gpu` other than the one the context was planned for.
    """
    gpu = request.gpu.strip().lower()
    _check(request, gpu)
    driver = request.cuda_driver if gpu != "none" else None
    port = request.port or DEFAULT_PORT
    tag = request.image or default_tag(tool_version, ImageTarget(gpu, driver))
    if context is not None:
        planned = context.get("target", {}).get("gpu")
        if planned is not None and planned != gpu:
            raise UsageError(
                f"the context in {request.directory} is an image for GPU {planned}, not {gpu}.",
                f"Give --gpu {planned}, or write the context for {gpu} first.",
            )
        tag = request.image or str(context.get("tag") or tag)
        port = request.port or int(context.get("port") or port)
    target = f"cc{gpu}" if gpu != "none" else "cpu"
    return KubeSpec(
        name=request.name,
        image=tag,
        gpu=gpu,
        port=port,
        models_dir=MODELS_DIR,
        tune_dir=TUNE_DIR,
        uid=UID,
        replicas=request.replicas,
        cuda_driver=driver,
        models_access="ReadWriteMany" if request.models_writable else "ReadOnlyMany",
        models_size=request.models_size,
        gpu_memory_gib=request.gpu_memory_gib,
        gpu_products=request.gpu_products,
        runtime_class=request.runtime_class or None,
        storage_class=request.storage_class,
        tune_budget_s=request.tune_budget_s,
        labels=(
            (f"{LABEL_PREFIX}/target", target),
            (f"{LABEL_PREFIX}/version", tool_version),
        ),
    )


def render_yaml(manifests: list[dict[str, Any]], spec: KubeSpec) -> str:
    """Return the manifests as one YAML stream (`---` between objects), with a header comment.

    Args:
        manifests: The objects.
        spec: Their spec (named in the header).
    """
    import yaml

    header = (
        f"# Written by `comfy-install image kube`: {spec.name} from {spec.image}, "
        f"{spec.replicas} replica(s).\n"
        "# Apply with `kubectl apply -f` (or run with `podman kube play`).\n"
    )
    body = yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False)
    return header + body


def write_kube(request: KubeRequest) -> dict[str, Any]:
    """Write the manifests of DIR's image beside DIR; return what was written.

    Args:
        request: The command's options.

    Returns:
        `path` (the YAML file), `image`, `replicas`, `startup_seconds` (the startup probe's
        window) and `objects` (`kind/name` of each, in order).

    Raises:
        UsageError: Bad options, or a context for another GPU.
        EnvironmentUnsupportedError: The folder cannot be written.
    """
    from installer import __version__
    from installer.edges.state import atomic_write_text

    directory = request.directory.expanduser().absolute()
    spec = kube_spec(request, _context_plan(directory), __version__)
    manifests = kube_manifests(spec)
    target = kube_dir(request) / KUBE_FILE
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentUnsupportedError(
            f"Cannot write the manifests to {target.parent}: {exc.strerror or exc}.",
            "Choose another folder with --output.",
        ) from exc
    atomic_write_text(target, render_yaml(manifests, spec))
    return {
        "path": str(target),
        "image": spec.image,
        "replicas": spec.replicas,
        "startup_seconds": startup_seconds(spec),
        "objects": [f"{m['kind']}/{m['metadata']['name']}" for m in manifests],
    }
