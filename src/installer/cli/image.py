"""`comfy-install image`: an OCI image of a planned install (build context, or the build itself).

`image context DIR` writes a Containerfile and the files it copies into DIR;
`image build DIR` does the same, then builds DIR with the first container
engine found (`docker buildx`, `podman`, `buildah`). Both plan the install for
the target (`--gpu CC --cuda-driver X.Y`) exactly as `install --dry-run` would
inside the image; `--dry-run` shows that plan of the image and writes nothing.
The logic lives in [`installer.image`][installer.image]; this module parses
options, imports heavy modules only inside the commands, and is registered on
the main app in [`installer.cli.app`][installer.cli.app].
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from installer.cli.options import (
    ComfyuiRefOpt,
    ComfyuiUrlOpt,
    ConfigOpt,
    CudaDriverOpt,
    DryRunOpt,
    ExtraIndexUrlOpt,
    FindLinksOpt,
    ImagePlatformOpt,
    ImagePortOpt,
    IndexUrlOpt,
    JsonOpt,
    NoLockOpt,
    PortOpt,
    PythonOpt,
    QuietOpt,
    TargetGpuOpt,
    TorchIndexOpt,
    VerboseOpt,
    build_request,
)

if TYPE_CHECKING:
    from installer.image.prepare import ImageRequest

image_app = typer.Typer(
    help="Build an OCI image of a planned install, for any container engine and orchestrator.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ContextArg = Annotated[Path, typer.Argument(help="The build context folder to write.")]
BaseOpt = Annotated[
    str | None,
    typer.Option(
        "--base", help="Base image (default: python:X.Y-slim-bookworm); may be a local image."
    ),
]
TagOpt = Annotated[
    str | None,
    typer.Option("--tag", help="Tag of the image (default: comfy-install:VERSION-TARGET)."),
]
WheelOpt = Annotated[
    Path | None,
    typer.Option("--wheel", help="This tool's wheel (default: built or repacked from what runs)."),
]
ToolkitOpt = Annotated[
    str | None,
    typer.Option("--toolkit-image", help="CUDA toolkit image of the stage that compiles wheels."),
]


@image_app.command("context")
def context(
    directory: ContextArg,
    gpu: TargetGpuOpt,
    cuda_driver: CudaDriverOpt = None,
    platform: ImagePlatformOpt = "linux",
    base: BaseOpt = None,
    tag: TagOpt = None,
    python: PythonOpt = None,
    config: ConfigOpt = None,
    comfyui_url: ComfyuiUrlOpt = None,
    comfyui_ref: ComfyuiRefOpt = None,
    torch_index: TorchIndexOpt = "auto",
    index_url: IndexUrlOpt = None,
    extra_index_urls: ExtraIndexUrlOpt = None,
    find_links: FindLinksOpt = None,
    no_lock: NoLockOpt = False,
    wheel: WheelOpt = None,
    port: PortOpt = 8188,
    toolkit_image: ToolkitOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a build context (Containerfile and the files it copies) for the target into DIR."""
    values = dict(locals())
    from installer.image.prepare import ImageRequest

    request = build_request(ImageRequest, values)
    _command(["image", "context", str(directory)], request, None, as_json, verbose, quiet)


@image_app.command("build")
def build(
    directory: ContextArg,
    gpu: TargetGpuOpt,
    cuda_driver: CudaDriverOpt = None,
    platform: ImagePlatformOpt = "linux",
    base: BaseOpt = None,
    tag: TagOpt = None,
    python: PythonOpt = None,
    config: ConfigOpt = None,
    comfyui_url: ComfyuiUrlOpt = None,
    comfyui_ref: ComfyuiRefOpt = None,
    torch_index: TorchIndexOpt = "auto",
    index_url: IndexUrlOpt = None,
    extra_index_urls: ExtraIndexUrlOpt = None,
    find_links: FindLinksOpt = None,
    no_lock: NoLockOpt = False,
    wheel: WheelOpt = None,
    port: PortOpt = 8188,
    toolkit_image: ToolkitOpt = None,
    engine: Annotated[
        str | None,
        typer.Option("--engine", help="docker, podman or buildah (default: the first found)."),
    ] = None,
    image_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="docker: keeps the HEALTHCHECK; oci: the labels also as OCI annotations, "
            "no HEALTHCHECK.",
        ),
    ] = "docker",
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the build context into DIR, then build and tag the image with a container engine."""
    values = dict(locals())
    from installer.image.prepare import ImageRequest

    request = build_request(ImageRequest, values)
    _command(["image", "build", str(directory)], request, engine or "", as_json, verbose, quiet)


def _command(
    command: list[str],
    request: ImageRequest,
    engine: str | None,
    as_json: bool,
    verbose: bool,
    quiet: bool,
) -> None:
    """Run `image context` (``engine`` None) or `image build` (``engine`` "": the first found)."""
    from installer.cli.common import guarded, make_logger, print_json
    from installer.image.prepare import make_image

    if request.dry_run:
        command.append("--dry-run")
    log = make_logger(verbose, quiet)
    data = guarded(command, as_json, log, verbose, lambda: make_image(request, engine, log))
    if as_json:
        print_json(command, data)
    elif request.dry_run:
        sys.stdout.write(_render(data))
    log.close()


def _render(data: dict[str, Any]) -> str:
    """The plan of the image as text, for `--dry-run` without `--json`."""
    target = data["target"]
    install = data["install_plan"]
    driver = f", CUDA driver {target['cuda_driver']}" if target["cuda_driver"] else ""
    lines = [
        f"image {data['tag']} from {data['base']}",
        f"  target: GPU {target['gpu']}{driver}, {target['platform']}, Python {target['python']}",
        f"  stages: {' -> '.join(data['stages'])}",
        f"  torch: {install['torch']['variant']} ({' '.join(install['torch']['packages'])})",
        f"  lock: {install['lock']['name'] or 'none'} ({install['lock']['reason']})",
        f"  plan fingerprint: {install['fingerprint']}",
        f"  runs: {' '.join(data['install_command'])}",
        "  install steps:",
    ]
    lines += [f"    {s['id']}: {s['action']} ({s['reason']})" for s in install["steps"]]
    lines.append("  context files: " + ", ".join(data["context_files"]))
    return "\n".join(lines) + "\n"


@image_app.command("kube")
def kube(
    directory: ContextArg,
    gpu: TargetGpuOpt,
    cuda_driver: CudaDriverOpt = None,
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Pods, one GPU each.")] = 1,
    image: Annotated[
        str | None,
        typer.Option("--image", help="The image the pods run (default: the context's tag)."),
    ] = None,
    port: ImagePortOpt = None,
    name: Annotated[
        str, typer.Option("--name", help="Name of the Deployment, Service and claims.")
    ] = "comfyui",
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Folder of the manifests (default: DIR-kube beside DIR)."),
    ] = None,
    models_writable: Annotated[
        bool,
        typer.Option(
            "--models-writable",
            help="Downloads run inside the pods: the models claim is ReadWriteMany "
            "(default ReadOnlyMany).",
        ),
    ] = False,
    models_size: Annotated[
        str, typer.Option("--models-size", help="Size of the models claim.")
    ] = "200Gi",
    gpu_memory: Annotated[
        float | None,
        typer.Option(
            "--gpu-memory",
            min=1,
            help="GiB of GPU memory the models need (nodes with less are not chosen).",
        ),
    ] = None,
    gpu_product: Annotated[
        list[str] | None,
        typer.Option(
            "--gpu-product",
            help="Only nodes with this nvidia.com/gpu.product label (repeatable), e.g. "
            "NVIDIA-H100-80GB-HBM3.",
        ),
    ] = None,
    runtime_class: Annotated[
        str,
        typer.Option("--runtime-class", help="RuntimeClass of the pods ('' for none)."),
    ] = "nvidia",
    storage_class: Annotated[
        str | None, typer.Option("--storage-class", help="StorageClass of the claims.")
    ] = None,
    tune_budget: Annotated[
        int, typer.Option("--tune-budget", min=1, help="Seconds of the first start's tune.")
    ] = 60,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write Kubernetes manifests for DIR's image beside it (DIR-kube/comfyui.yaml)."""
    from installer.cli.common import guarded, make_logger, print_json
    from installer.image.kube import KubeRequest, write_kube

    request = KubeRequest(
        directory=directory,
        gpu=gpu,
        cuda_driver=cuda_driver,
        replicas=replicas,
        image=image,
        port=port,
        name=name,
        output=output,
        models_writable=models_writable,
        models_size=models_size,
        gpu_memory_gib=gpu_memory,
        gpu_products=tuple(gpu_product or ()),
        runtime_class=runtime_class,
        storage_class=storage_class,
        tune_budget_s=tune_budget,
    )
    command = ["image", "kube", str(directory)]
    log = make_logger(False, quiet)
    data = guarded(command, as_json, log, False, lambda: write_kube(request))
    if as_json:
        print_json(command, data)
    else:
        log.success(f"wrote {', '.join(data['objects'])} to {data['path']}")
        log.info(f"apply with: kubectl apply -f {data['path']}")
    log.close()
