"""`comfy-install image`: an OCI image of a planned install (build context, or the build itself).

`image context DIR` writes a Containerfile and the files it copies into DIR;
`image build DIR` does the same, then builds DIR with the first container
engine found (`docker buildx`, `podman`, `buildah`). Both plan the install for
the target (`--gpu CC --cuda-driver X.Y`) exactly as `install --dry-run` would
inside the image; `--dry-run` shows that plan of the image and writes nothing.
The logic lives in [`installer.image`][installer.image]; this module parses
options, imports heavy modules only inside the commands, and is registered on
the main app by `installer.cli` (`app.add_typer(image_app, name="image")`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from installer.image.containerfile import ContextFile, ImageSpec
    from installer.log import InstallerLogger

image_app = typer.Typer(
    help="Build an OCI image of a planned install, for any container engine and orchestrator.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ContextArg = Annotated[Path, typer.Argument(help="The build context folder to write.")]
GpuOpt = Annotated[
    str,
    typer.Option("--gpu", help="The target's compute capability (8.9), or none for a CPU image."),
]
DriverOpt = Annotated[
    str | None,
    typer.Option("--cuda-driver", help="Newest CUDA the target's driver supports (12.8)."),
]
PlatformOpt = Annotated[str, typer.Option("--platform", help="The image's OS (only linux).")]
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
PythonOpt = Annotated[
    str | None, typer.Option("--python", help="Python X.Y in the image (default: the config's).")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Another dependencies.json (copied in).")
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--comfyui-url", help="Clone ComfyUI from here; a local git bundle is copied into DIR."
    ),
]
RefOpt = Annotated[
    str | None, typer.Option("--comfyui-ref", help="Tag, branch or commit instead of the pin.")
]
TorchIndexOpt = Annotated[
    str,
    typer.Option(
        "--torch-index", help="auto, cpu, a variant (cu128), default (the default index) or a URL."
    ),
]
IndexOpt = Annotated[
    str | None, typer.Option("--index-url", help="Package index for every install in the build.")
]
ExtraIndexOpt = Annotated[
    list[str] | None, typer.Option("--extra-index-url", help="Extra package index (repeatable).")
]
FindLinksOpt = Annotated[
    list[str] | None,
    typer.Option("--find-links", help="Folder of wheels (repeatable); local ones are copied in."),
]
NoLockOpt = Annotated[
    bool, typer.Option("--no-lock", help="Resolve the requirements live, even with a lock.")
]
WheelOpt = Annotated[
    Path | None,
    typer.Option("--wheel", help="This tool's wheel (default: built from the checkout)."),
]
PortOpt = Annotated[int, typer.Option("--port", min=1, max=65535, help="ComfyUI's port.")]
ToolkitOpt = Annotated[
    str | None,
    typer.Option("--toolkit-image", help="CUDA toolkit image of the stage that compiles wheels."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show the plan of the image; write nothing.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show the engine's output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]


@dataclass(frozen=True)
class ImageRequest:
    """The options of `image context` and `image build`."""

    directory: Path
    gpu: str
    cuda_driver: str | None = None
    platform: str = "linux"
    base: str | None = None
    tag: str | None = None
    python: str | None = None
    config: Path | None = None
    comfyui_url: str | None = None
    comfyui_ref: str | None = None
    torch_index: str = "auto"
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_lock: bool = False
    wheel: Path | None = None
    port: int = 8188
    toolkit_image: str | None = None
    dry_run: bool = False


@image_app.command("context")
def context(
    directory: ContextArg,
    gpu: GpuOpt,
    cuda_driver: DriverOpt = None,
    platform: PlatformOpt = "linux",
    base: BaseOpt = None,
    tag: TagOpt = None,
    python: PythonOpt = None,
    config: ConfigOpt = None,
    comfyui_url: UrlOpt = None,
    comfyui_ref: RefOpt = None,
    torch_index: TorchIndexOpt = "auto",
    index_url: IndexOpt = None,
    extra_index_url: ExtraIndexOpt = None,
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
    request = ImageRequest(
        directory, gpu, cuda_driver, platform, base, tag, python, config, comfyui_url,
        comfyui_ref, torch_index, index_url, tuple(extra_index_url or ()),
        tuple(find_links or ()), no_lock, wheel, port, toolkit_image, dry_run,
    )  # fmt: skip
    _command(["image", "context", str(directory)], request, None, as_json, verbose, quiet)


@image_app.command("build")
def build(
    directory: ContextArg,
    gpu: GpuOpt,
    cuda_driver: DriverOpt = None,
    platform: PlatformOpt = "linux",
    base: BaseOpt = None,
    tag: TagOpt = None,
    python: PythonOpt = None,
    config: ConfigOpt = None,
    comfyui_url: UrlOpt = None,
    comfyui_ref: RefOpt = None,
    torch_index: TorchIndexOpt = "auto",
    index_url: IndexOpt = None,
    extra_index_url: ExtraIndexOpt = None,
    find_links: FindLinksOpt = None,
    no_lock: NoLockOpt = False,
    wheel: WheelOpt = None,
    port: PortOpt = 8188,
    toolkit_image: ToolkitOpt = None,
    engine: Annotated[
        str | None,
        typer.Option("--engine", help="docker, podman or buildah (default: the first found)."),
    ] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the build context into DIR, then build and tag the image with a container engine."""
    request = ImageRequest(
        directory, gpu, cuda_driver, platform, base, tag, python, config, comfyui_url,
        comfyui_ref, torch_index, index_url, tuple(extra_index_url or ()),
        tuple(find_links or ()), no_lock, wheel, port, toolkit_image, dry_run,
    )  # fmt: skip
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
    from installer.cli import guarded, make_logger, print_json

    if request.dry_run:
        command.append("--dry-run")
    log = make_logger(verbose, quiet)
    data = guarded(command, as_json, log, verbose, lambda: _run(request, engine, log))
    if as_json:
        print_json(command, data)
    elif request.dry_run:
        sys.stdout.write(_render(data))
    log.close()


def _run(request: ImageRequest, engine: str | None, log: InstallerLogger) -> dict[str, Any]:
    import tempfile

    from installer.image.containerfile import CONTAINERFILE, image_plan

    with tempfile.TemporaryDirectory(prefix="comfy-install-image-") as scratch:
        spec, files = _prepare(request, Path(scratch), log)
        data = image_plan(spec, files)
        if request.dry_run:
            return data
        from installer.image.context import write_context

        directory = request.directory.expanduser().absolute()
        written = write_context(directory, files)
    data["context"] = {
        "directory": str(directory),
        "files": [{"path": path, "sha256": digest} for path, digest in written],
    }
    log.success(f"wrote the build context to {directory} ({len(written)} files)")
    if engine is None:
        log.info(f"build it with: docker buildx build --load -t {spec.tag} {directory}")
        return data
    from installer.image.engine import build_command, find_engine, run_build

    found = find_engine(engine or None)
    log.info(f"building {spec.tag} with {found.name} ({found.binary})")
    result = run_build(
        found, build_command(found, directory, directory / CONTAINERFILE, spec.tag), spec.tag, log
    )
    log.success(f"built {result.tag} with {result.engine} in {result.seconds:.0f} s")
    data["build"] = {
        "engine": result.engine,
        "tag": result.tag,
        "seconds": round(result.seconds, 1),
    }
    return data


def _prepare(
    request: ImageRequest, scratch: Path, log: InstallerLogger
) -> tuple[ImageSpec, list[ContextFile]]:
    """Plan the install for the target and describe the image and its context files."""
    import re
    from importlib.metadata import version as dist_version

    from installer import __version__
    from installer.errors import UsageError
    from installer.image.containerfile import (
        BUILD_DIR,
        DEFAULT_TOOLKIT_IMAGE,
        INSTALL_DIR,
        ContextFile,
        ImageSpec,
        ImageTarget,
        InstallArgs,
        context_files,
        default_base,
        default_tag,
        summarize_plan,
    )
    from installer.image.context import (
        build_tool_wheel,
        comfyui_source_file,
        find_links_files,
        is_local,
        sha256_file,
    )
    from installer.plan import InstallOptions
    from installer.planning import make_plan

    if request.platform != "linux":
        raise UsageError(
            f"--platform {request.platform}: images are Linux images.", "Use --platform linux."
        )
    gpu = request.gpu.strip().lower()
    if gpu != "none" and not re.fullmatch(r"[0-9]+\.[0-9]+", gpu):
        raise UsageError(
            f"--gpu {request.gpu}: expected a compute capability like 8.9, or none.",
            "An image is planned for its target, not for this machine: name the target's GPU.",
        )
    extra: list[ContextFile] = []
    comfyui_url = request.comfyui_url
    if comfyui_url and is_local(comfyui_url):
        comfyui_url, source = comfyui_source_file(comfyui_url)
        extra.append(source)
    find_links: list[str] = []
    for location in request.find_links:
        if is_local(location):
            inside, wheels = find_links_files(location)
            extra += wheels
            if inside not in find_links:
                find_links.append(inside)
        else:
            find_links.append(location)
    config_inside = None
    if request.config is not None:
        if not request.config.is_file():
            raise UsageError(f"--config {request.config}: no such file.")
        config_inside = f"{BUILD_DIR}/config/dependencies.json"
        extra.append(ContextFile("config/dependencies.json", source=request.config))
    install = InstallArgs(
        comfyui_url=comfyui_url,
        comfyui_ref=request.comfyui_ref,
        torch_index=request.torch_index,
        index_url=request.index_url,
        extra_index_urls=request.extra_index_urls,
        find_links=tuple(find_links),
        config=config_inside,
        no_lock=request.no_lock,
    )
    options = InstallOptions(
        install_dir=Path(INSTALL_DIR),
        config_path=request.config,
        gpu=gpu,
        cuda_driver=request.cuda_driver,
        platform="linux",
        python=request.python,
        comfyui_ref=request.comfyui_ref,
        comfyui_url=comfyui_url,
        torch_index=request.torch_index,
        index_url=request.index_url,
        extra_index_urls=request.extra_index_urls,
        find_links=tuple(find_links),
        no_lock=request.no_lock,
        dry_run=True,
    )
    plan = make_plan(options).plan
    for warning in plan.warnings:
        log.warn(warning)
    lock_sha256 = sha256_file(Path(plan.lock.path)) if plan.lock and plan.lock.path else None
    target = ImageTarget(gpu, request.cuda_driver if gpu != "none" else None, "linux", plan.python)
    spec = ImageSpec(
        target=target,
        base=request.base or default_base(plan.python),
        tag=request.tag or default_tag(__version__, target),
        tool_version=__version__,
        uv_version=dist_version("uv"),
        plan=summarize_plan(plan, lock_sha256),
        install=install,
        port=request.port,
        toolkit_image=request.toolkit_image or DEFAULT_TOOLKIT_IMAGE,
        extra_files=tuple(sorted(extra, key=lambda f: f.path)),
    )
    if request.wheel is not None:
        if not request.wheel.is_file():
            raise UsageError(f"--wheel {request.wheel}: no such file.")
        wheel = request.wheel
    elif request.dry_run:
        wheel = Path(spec.wheel_name)
    else:
        with log.activity("build the comfy-install wheel"):
            wheel = build_tool_wheel(scratch, __version__)
    return spec, context_files(spec, wheel)


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
