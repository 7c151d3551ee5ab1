"""What `image context` and `image build` do below their parsing: plan, describe, write, build.

[`prepare`][installer.image.prepare.prepare] plans the install for the image's
target exactly as `install --dry-run` would inside the image and turns that plan
into an [`ImageSpec`][installer.image.containerfile.ImageSpec] and its context
files; [`make_image`][installer.image.prepare.make_image] writes the context and,
when an engine is asked for, builds it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from installer.core.log import InstallerLogger
    from installer.image.containerfile import ContextFile, ImageSpec


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
    image_format: str = "docker"
    """`docker` (keeps the HEALTHCHECK) or `oci` (keeps the labels as annotations too)."""


def make_image(request: ImageRequest, engine: str | None, log: InstallerLogger) -> dict[str, Any]:
    """Plan the image, write its context and, with an engine, build it; return the image plan.

    Args:
        request: The command's options.
        engine: None: only write the context (`image context`); "": build with the first engine
            found; a name: build with that engine.
        log: The command's logger.

    Returns:
        The plan of the image ([`image_plan`][installer.image.containerfile.image_plan]), with
        `context` (the files written) and `build` (engine, tag, format, seconds, steps, the steps
        taken from the layer cache, image ID) when they happened.

    Raises:
        InstallerError: Bad options, a plan that does not fit, an unwritable folder, no engine, or
            a failed build.
    """
    from installer.image.containerfile import CONTAINERFILE, image_plan

    with tempfile.TemporaryDirectory(prefix="comfy-install-image-") as scratch:
        spec, files = prepare(request, Path(scratch), log)
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
    from installer.image.containerfile import labels
    from installer.image.engine import build_command, find_engine, run_build

    found = find_engine(engine or None)
    log.info(
        f"building {spec.tag} with {found.name} ({found.binary}), {request.image_format} format"
    )
    with tempfile.TemporaryDirectory(prefix="comfy-install-image-") as scratch:
        iidfile = Path(scratch) / "image-id"
        command = build_command(
            found,
            directory,
            directory / CONTAINERFILE,
            spec.tag,
            request.image_format,
            labels(spec),
            iidfile,
        )
        result = run_build(found, command, spec.tag, log, iidfile=iidfile)
    log.success(
        f"built {result.tag} with {result.engine} in {result.seconds:.0f} s"
        f" ({result.cached_steps} of {result.steps} steps from the layer cache)"
    )
    data["build"] = {
        "engine": result.engine,
        "tag": result.tag,
        "format": request.image_format,
        "seconds": round(result.seconds, 1),
        "steps": result.steps,
        "cached_steps": result.cached_steps,
        "image_id": result.image_id,
    }
    return data


def prepare(
    request: ImageRequest, scratch: Path, log: InstallerLogger
) -> tuple[ImageSpec, list[ContextFile]]:
    """Plan the install for the target and describe the image and its context files.

    Args:
        request: The command's options.
        scratch: A folder for this tool's wheel while the context is written.
        log: The command's logger (the plan's warnings).

    Returns:
        The image and its context files, sorted by path.

    Raises:
        UsageError: Bad options (platform, GPU, missing files), or a toolkit image that cannot
            compile for the torch the plan installs.
        PlanError: No install plan fits the target.
    """
    import re
    from dataclasses import replace
    from importlib.metadata import version as dist_version

    from installer import __version__
    from installer.commands.planning import make_plan
    from installer.core.errors import UsageError
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
        pinned_version,
        summarize_plan,
        toolkit_cuda,
        toolkit_problem,
    )
    from installer.image.context import (
        comfyui_source_file,
        find_links_files,
        is_local,
        sha256_file,
        tool_requirements,
    )
    from installer.image.engine import FORMATS
    from installer.image.own_wheel import tool_wheel
    from installer.plan.records import InstallOptions
    from installer.plan.sage_sources import cuda_major

    if request.image_format not in FORMATS:
        raise UsageError(f"--format {request.image_format}: expected one of {', '.join(FORMATS)}.")
    if request.platform.strip().lower() != "linux":
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
    toolkit_image = request.toolkit_image or DEFAULT_TOOLKIT_IMAGE
    options = InstallOptions(
        install_dir=Path(INSTALL_DIR),
        config_path=request.config,
        # What the accelerators stage compiles with: the plan's rules for nvcc apply to it.
        cuda_toolkit=toolkit_cuda(toolkit_image),
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
    summary = summarize_plan(plan, None)
    if summary.source_builds and install.torch_index == "auto":
        # The install inside the image has no toolkit: it must take the torch the wheels of the
        # accelerators stage were built against, not choose again.
        install = replace(install, torch_index=plan.torch.variant)
    lock_sha256 = sha256_file(Path(plan.lock.path)) if plan.lock and plan.lock.path else None
    target = ImageTarget(gpu, request.cuda_driver if gpu != "none" else None, "linux", plan.python)
    requirements, pins_from = tool_requirements()
    log.debug(f"the tool's dependencies in the image: pinned from {pins_from}")
    spec = ImageSpec(
        target=target,
        base=request.base or default_base(plan.python),
        tag=request.tag or default_tag(__version__, target),
        tool_version=__version__,
        uv_version=pinned_version(requirements, "uv") or dist_version("uv"),
        plan=summarize_plan(plan, lock_sha256),
        tool_requirements=requirements,
        install=install,
        port=request.port,
        toolkit_image=toolkit_image,
        extra_files=tuple(sorted(extra, key=lambda f: f.path)),
    )
    problem = toolkit_problem(spec)
    if problem is not None:
        raise UsageError(
            f"{problem[0].upper()}{problem[1:]}.",
            f"Pass --toolkit-image with an nvidia/cuda devel image of CUDA "
            f"{cuda_major(spec.plan.torch_cuda)}.x, or leave --torch-index at auto so the plan "
            "picks the torch build the toolkit can compile for.",
        )
    if request.wheel is not None:
        if not request.wheel.is_file():
            raise UsageError(f"--wheel {request.wheel}: no such file.")
        wheel = request.wheel
    elif request.dry_run:
        wheel = Path(spec.wheel_name)
    else:
        with log.activity("make the comfy-install wheel"):
            found = tool_wheel(scratch, __version__)
        log.info(f"comfy-install's wheel for the image: {found.origin}")
        wheel = found.path
    return spec, context_files(spec, wheel)
