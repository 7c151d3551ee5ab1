"""The Containerfile of an image and the files of its build context. Pure: no I/O.

An image is built in stages so that what compiles never ships:

- `base`: the base image, plus git and Python when it lacks them, the non-root
  user and the folders the volumes mount on;
- `tool`: a venv with this tool's dependencies, pinned (and hashed) as its
  `uv.lock` has them, uv among them, then this tool's wheel, both copied into
  the context from the checkout;
- `accelerators` (only when the plan compiles a package, e.g. a SageAttention
  built from source): a CUDA toolkit image that builds the wheels; only the
  wheels are copied out;
- `runtime`: `base` + the tool's venv, then `comfy-install install` for the
  target as the non-root user. Only what that one heavy `RUN` needs comes before
  it; the start script ([`installer.image.runtime_files`][installer.image.runtime_files]) and
  every instruction that only sets metadata (labels with the tag, runtime
  variables, port, volumes, health check, entrypoint) come after it, so a build
  that changes only those reuses the install's layer from the cache.

Everything here is a function of its arguments: the same target, options and
plan give the same Containerfile and context list, byte for byte (sorted, no
timestamps, no host paths in the text).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from installer.image.runtime_files import START_SCRIPT, extra_model_paths_yaml, start_script
from installer.plan.sage_sources import cuda_major

if TYPE_CHECKING:
    from installer.plan.records import Plan

IMAGE_SCHEMA_VERSION = 1
CONTAINERFILE = "Containerfile"
IMAGE_PLAN_FILE = "image.json"
MARKER_FILE = ".comfy-install-image"
REQUIREMENTS_FILE = "dist/requirements.txt"
"""The tool's pinned dependencies, in the context (and under `/build` in the tool stage)."""
INSTALL_DIR = "/opt/comfyui"
TOOL_VENV = "/opt/comfy-install"
BUILD_DIR = "/build"
MODELS_DIR = "/models"
TUNE_DIR = "/var/lib/comfy-install/tune"
ETC_DIR = "/etc/comfy-install"
USER = "comfy"
UID = 1000
DEFAULT_PORT = 8188
DEFAULT_TOOLKIT_IMAGE = "docker.io/nvidia/cuda:12.8.1-devel-ubuntu24.04"
SOURCE_DATE_EPOCH = 315532800
"""1980-01-01, the earliest time a zip (a wheel) can hold: every context file gets it."""
LABEL_PREFIX = "io.github.comfy-install"
HOST_ONLY_STEPS = ("uv",)
"""Steps whose inputs describe the machine that plans (its uv's path), not the image."""


@dataclass(frozen=True)
class ImageTarget:
    """The machine the image is for: its GPU, driver, OS and Python."""

    gpu: str
    """A compute capability like `8.9`, or `none` for a CPU image."""
    cuda_driver: str | None = None
    """Newest CUDA the target driver supports (`12.8`); None with `gpu="none"`."""
    platform: str = "linux"
    python: str = "3.12"

    @property
    def slug(self) -> str:
        """A short name of the target for tags, e.g. `cc8.9-cuda12.8` or `cpu`."""
        if self.gpu == "none":
            return "cpu"
        return f"cc{self.gpu}" + (f"-cuda{self.cuda_driver}" if self.cuda_driver else "")


@dataclass(frozen=True)
class InstallArgs:
    """The options `comfy-install install` gets inside the image (paths as the image sees them)."""

    comfyui_url: str | None = None
    comfyui_ref: str | None = None
    torch_index: str = "auto"
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    config: str | None = None
    no_lock: bool = False


@dataclass(frozen=True)
class SourceBuild:
    """A package the plan compiles (it needs the CUDA toolkit of the `accelerators` stage)."""

    name: str
    requirement: str


@dataclass(frozen=True)
class PlanSummary:
    """What the image records and shows of the install plan made for its target."""

    fingerprint: str
    torch_variant: str
    torch_index_url: str | None
    torch_packages: tuple[str, ...]
    comfyui_ref: str
    lock_name: str | None = None
    lock_sha256: str | None = None
    lock_reason: str = ""
    source_builds: tuple[SourceBuild, ...] = ()
    steps: tuple[tuple[str, str, str], ...] = ()
    """(id, action, reason) of each planned step."""
    torch_cuda: str | None = None
    """torch's CUDA build (`cu128`); None for a CPU build."""


@dataclass(frozen=True)
class ContextFile:
    """One file of the build context: copied from ``source`` or written from ``text``."""

    path: str
    """Relative POSIX path inside the context folder."""
    source: Path | None = None
    text: str | None = None


@dataclass(frozen=True)
class ImageSpec:
    """Everything the Containerfile is made from."""

    target: ImageTarget
    base: str
    tag: str
    tool_version: str
    uv_version: str
    """The uv of the tool's venv in the image (its pin in ``tool_requirements``)."""
    plan: PlanSummary
    tool_requirements: str
    """This tool's dependencies, pinned (and hashed when exported from `uv.lock`), in pip's
    requirements format: the tool stage installs exactly these, then the wheel without its
    dependencies."""
    install: InstallArgs = field(default_factory=InstallArgs)
    port: int = DEFAULT_PORT
    toolkit_image: str = DEFAULT_TOOLKIT_IMAGE
    extra_files: tuple[ContextFile, ...] = ()
    """Host files the install needs (a ComfyUI bundle, wheels, a config), already placed."""

    @property
    def wheel_name(self) -> str:
        """The file name of this tool's wheel (`comfy_install-0.1.0-py3-none-any.whl`)."""
        return f"comfy_install-{self.tool_version}-py3-none-any.whl"


def default_base(python: str) -> str:
    """Return the base image used when `--base` is not given: Debian slim with that Python.

    Args:
        python: The Python version `X.Y` the install uses.
    """
    return f"docker.io/library/python:{python}-slim-bookworm"


def default_tag(tool_version: str, target: ImageTarget) -> str:
    """Return the tag used when `--tag` is not given, e.g. `comfy-install:0.1.0-cc8.9-cuda12.8`.

    Args:
        tool_version: This tool's version.
        target: The image's target.
    """
    return f"comfy-install:{tool_version}-{target.slug}"


def plan_fingerprint(step_fingerprints: Mapping[str, str], tool_version: str) -> str:
    """Return the fingerprint of an install plan: a hash of its steps' fingerprints.

    Args:
        step_fingerprints: Step id → that step's fingerprint (a hash of its inputs); the steps of
            `HOST_ONLY_STEPS` are left out, as they describe the planning machine.
        tool_version: This tool's version (the same inputs mean another thing in another version).

    Returns:
        `sha256:` and 64 hex digits.
    """
    kept = {k: v for k, v in sorted(step_fingerprints.items()) if k not in HOST_ONLY_STEPS}
    document = json.dumps({"tool": tool_version, "steps": kept}, sort_keys=True)
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()


def summarize_plan(plan: Plan, lock_sha256: str | None = None) -> PlanSummary:
    """Return what an image records of an install plan.

    Args:
        plan: The plan made for the image's target (with the options the install inside the image
            gets).
        lock_sha256: The sha256 of the lock file the plan installs (reading it is I/O, done by the
            caller); None when the plan resolves live.
    """
    path = plan.lock.path if plan.lock else None
    lock_name = PurePosixPath(path.replace("\\", "/")).name if path else None
    return PlanSummary(
        fingerprint=plan_fingerprint(
            {step.id: step.fingerprint for step in plan.steps}, plan.tool_version
        ),
        torch_variant=plan.torch.variant,
        torch_index_url=plan.torch.index_url,
        torch_packages=tuple(plan.torch.packages),
        comfyui_ref=plan.comfyui.ref,
        lock_name=lock_name,
        lock_sha256=lock_sha256 if lock_name else None,
        lock_reason=plan.lock.reason if plan.lock else "",
        source_builds=tuple(
            SourceBuild(entry.name, entry.requirement or entry.distribution or entry.name)
            for entry in plan.optimizations
            if entry.action == "install" and entry.builds_from_source
        ),
        steps=tuple((step.id, step.action, step.reason) for step in plan.steps),
        torch_cuda=plan.torch.cuda,
    )


def toolkit_cuda(image: str) -> str | None:
    """Return the CUDA version `X.Y` of an `nvidia/cuda` toolkit image, from its tag.

    Args:
        image: The image reference, e.g. `docker.io/nvidia/cuda:12.8.1-devel-ubuntu24.04`.

    Returns:
        `12.8`; None when the reference does not say (another image, a digest only).
    """
    match = re.search(r"nvidia/cuda:([0-9]+)\.([0-9]+)", image)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def toolkit_problem(spec: ImageSpec) -> str | None:
    """Why the `accelerators` stage cannot build what the plan compiles, or None when it can.

    torch's extension builder refuses an nvcc of another CUDA major version than torch's, so
    the toolkit image must have the CUDA major of the torch the plan installs (the same rule
    the install plan applies to the machine's own nvcc).

    Args:
        spec: The image.
    """
    if not spec.plan.source_builds:
        return None
    have = toolkit_cuda(spec.toolkit_image)
    wanted = cuda_major(spec.plan.torch_cuda)
    if have is None or wanted is None or int(have.split(".")[0]) == wanted:
        return None
    return (
        f"the toolkit image {spec.toolkit_image} has CUDA {have}, but the plan installs torch "
        f"{spec.plan.torch_variant} (CUDA {wanted}.x), and torch builds extensions only with an "
        f"nvcc of its own CUDA major"
    )


def install_command(spec: ImageSpec) -> list[str]:
    """Return the `comfy-install install` command line the image's build runs.

    Args:
        spec: The image.
    """
    target, args = spec.target, spec.install
    # --no-tune: the build has no GPU; the start script measures on the real one
    words = ["comfy-install", "install", INSTALL_DIR, "--no-tune", "--gpu", target.gpu]
    if target.cuda_driver and target.gpu != "none":
        words += ["--cuda-driver", target.cuda_driver]
    words += ["--python", target.python]
    if args.config:
        words += ["--config", args.config]
    if args.comfyui_url:
        words += ["--comfyui-url", args.comfyui_url]
    if args.comfyui_ref:
        words += ["--comfyui-ref", args.comfyui_ref]
    if args.torch_index != "auto":
        words += ["--torch-index", args.torch_index]
    if args.index_url:
        words += ["--index-url", args.index_url]
    for url in args.extra_index_urls:
        words += ["--extra-index-url", url]
    links = list(args.find_links)
    if spec.plan.source_builds:
        links.append(f"{BUILD_DIR}/accelerators")
    for link in links:
        words += ["--find-links", link]
    if args.no_lock:
        words.append("--no-lock")
    return words


def labels(spec: ImageSpec) -> dict[str, str]:
    """Return the image's labels (also written as OCI annotations), sorted by key.

    Args:
        spec: The image.
    """
    plan, target = spec.plan, spec.target
    found = {
        "org.opencontainers.image.title": "ComfyUI (comfy-install)",
        "org.opencontainers.image.description": (
            f"ComfyUI installed by comfy-install {spec.tool_version} for {target.slug}"
        ),
        "org.opencontainers.image.version": spec.tool_version,
        "org.opencontainers.image.base.name": spec.base,
        "org.opencontainers.image.ref.name": spec.tag,
        f"{LABEL_PREFIX}.plan-fingerprint": plan.fingerprint,
        f"{LABEL_PREFIX}.lock": plan.lock_name or "none",
        f"{LABEL_PREFIX}.lock-sha256": plan.lock_sha256 or "none",
        f"{LABEL_PREFIX}.target.gpu": target.gpu,
        f"{LABEL_PREFIX}.target.cuda-driver": target.cuda_driver or "none",
        f"{LABEL_PREFIX}.target.platform": target.platform,
        f"{LABEL_PREFIX}.target.python": target.python,
        f"{LABEL_PREFIX}.torch": f"{plan.torch_variant}: {' '.join(plan.torch_packages)}",
        f"{LABEL_PREFIX}.comfyui-ref": plan.comfyui_ref,
    }
    return dict(sorted(found.items()))


def _q(word: str) -> str:
    return shlex.quote(word)


def _json_list(words: Sequence[str]) -> str:
    return json.dumps(list(words))


def _run(commands: Sequence[str]) -> str:
    """A `RUN` of several shell commands, one per line, stopping at the first failure."""
    return "RUN set -eu; \\\n    " + "; \\\n    ".join(commands)


def _index_words(spec: ImageSpec) -> list[str]:
    words: list[str] = []
    if spec.install.index_url:
        words += ["--index-url", spec.install.index_url]
    for url in spec.install.extra_index_urls:
        words += ["--extra-index-url", url]
    return words


def _base_stage(spec: ImageSpec) -> list[str]:
    dirs = " ".join([INSTALL_DIR, MODELS_DIR, TUNE_DIR])
    return [
        "FROM ${BASE_IMAGE} AS base",
        _run(
            [
                'missing=""',
                'command -v git >/dev/null || missing="$missing git"',
                'command -v python3 >/dev/null || missing="$missing python3 python3-venv"',
                'if [ -n "$missing" ]; then apt-get update'
                " && apt-get install -y --no-install-recommends ca-certificates $missing"
                " && rm -rf /var/lib/apt/lists/*; fi",
                f"groupadd --gid {UID} {USER}",
                f"useradd --uid {UID} --gid {UID} --create-home --shell /bin/sh {USER}",
                f"mkdir -p {dirs}",
                f"chown {UID}:{UID} {dirs}",
            ]
        ),
    ]


def pinned_version(requirements: str, name: str) -> str | None:
    """Return the version ``requirements`` pins ``name`` to (`uv==0.13.9` → `0.13.9`), or None.

    Args:
        requirements: Text in pip's requirements format (one `name==version` per requirement).
        name: The distribution, e.g. `uv` (compared as PEP 503 normalises names).
    """
    wanted = re.sub(r"[-_.]+", "-", name).lower()
    for line in requirements.splitlines():
        found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;\\]+)", line)
        if found and re.sub(r"[-_.]+", "-", found[1]).lower() == wanted:
            return found[2]
    return None


def _tool_stage(spec: ImageSpec) -> list[str]:
    wheel = f"{BUILD_DIR}/dist/{spec.wheel_name}"
    requirements = f"{BUILD_DIR}/{REQUIREMENTS_FILE}"
    index = " ".join(_q(word) for word in _index_words(spec))
    index = f" {index}" if index else ""
    pip = f"{TOOL_VENV}/bin/python -m pip install --no-cache-dir --no-deps"
    return [
        "FROM base AS tool",
        "# The tool's dependencies as its uv.lock pins (and hashes) them, then the tool without",
        "# them: a new wheel with the same dependencies reuses the first layer.",
        f"COPY {REQUIREMENTS_FILE} {requirements}",
        _run([f"python3 -m venv {TOOL_VENV}", f"{pip}{index} --requirement {requirements}"]),
        f"COPY dist/{spec.wheel_name} {wheel}",
        f"RUN {pip} {wheel}",
    ]


def _accelerators_stage(spec: ImageSpec) -> list[str]:
    plan, target = spec.plan, spec.target
    tools, build = "/opt/build-tools", "/opt/build"
    torch_index = f" --index-url {_q(plan.torch_index_url)}" if plan.torch_index_url else ""
    torch = " ".join(_q(package) for package in plan.torch_packages)
    wheels = " ".join(_q(entry.requirement) for entry in plan.source_builds)
    return [
        "# Compiles what the plan builds from source; only the wheels leave this stage.",
        "FROM ${TOOLKIT_IMAGE} AS accelerators",
        f"ENV TORCH_CUDA_ARCH_LIST={target.gpu if target.gpu != 'none' else ''}",
        _run(
            [
                "apt-get update",
                "apt-get install -y --no-install-recommends build-essential ca-certificates git"
                " python3 python3-venv python3-pip",
                "rm -rf /var/lib/apt/lists/*",
                f"python3 -m venv {tools}",
                f"{tools}/bin/python -m pip install --no-cache-dir uv=={spec.uv_version}",
                f"{tools}/bin/uv venv --seed --python {target.python} {build}",
                f"{tools}/bin/uv pip install --no-cache --python {build}/bin/python{torch_index}"
                f" {torch}",
                f"{tools}/bin/uv pip install --no-cache --python {build}/bin/python"
                " setuptools wheel ninja packaging",
                f"{build}/bin/python -m pip wheel --no-cache-dir --no-build-isolation --no-deps"
                f" --wheel-dir /wheels {wheels}",
            ]
        ),
    ]


def _runtime_stage(spec: ImageSpec) -> list[str]:
    owner = f"{UID}:{UID}"
    lines = [
        "FROM base AS runtime",
        f"COPY --from=tool {TOOL_VENV} {TOOL_VENV}",
    ]
    if spec.plan.source_builds:
        lines.append(f"COPY --from=accelerators --chown={owner} /wheels/ {BUILD_DIR}/accelerators/")
    lines.append(f"COPY etc/extra_model_paths.yaml {ETC_DIR}/extra_model_paths.yaml")
    folders = sorted({PurePosixPath(f.path).parts[0] for f in spec.extra_files})
    lines += [f"COPY --chown={owner} {name}/ {BUILD_DIR}/{name}/" for name in folders]
    lines += [
        f'ENV PATH="{TOOL_VENV}/bin:${{PATH}}" \\\n    PYTHONUNBUFFERED=1',
        f"USER {owner}",
        f"WORKDIR {INSTALL_DIR}",
        "# The one heavy layer: the install for the target, as the non-root user. Only what it",
        "# needs comes before it; the metadata after it (tag, labels, ports, health check) can",
        "# change without running it again.",
        _run(
            [
                "export UV_CACHE_DIR=/tmp/uv-cache",
                " ".join(_q(word) for word in install_command(spec)),
                f"ln -s {ETC_DIR}/extra_model_paths.yaml"
                f" {INSTALL_DIR}/ComfyUI/extra_model_paths.yaml",
                'rm -rf /tmp/uv-cache "$HOME/.cache"',
            ]
        ),
    ]
    lines.append(f"COPY {START_SCRIPT} {ETC_DIR}/start.sh")
    label_lines = [f"{key}={json.dumps(value)}" for key, value in labels(spec).items()]
    lines.append("LABEL " + " \\\n      ".join(label_lines))
    env = ['COMFY_EXTRA_ARGS=""', "ENABLE_STARTUP_WARMUP=1", "COMFY_TUNE_AT_START=1"]
    lines.append("ENV " + " \\\n    ".join([*env, "COMFY_TUNE_BUDGET=60"]))
    url = f"http://127.0.0.1:{spec.port}/object_info"
    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=8)"
    lines += [
        f"EXPOSE {spec.port}",
        f"VOLUME {_json_list([MODELS_DIR, TUNE_DIR])}",
        "HEALTHCHECK --interval=30s --timeout=10s --start-period=10m --retries=3 \\\n"
        f"    CMD {_json_list([f'{TOOL_VENV}/bin/python', '-c', probe])}",
        "ENTRYPOINT "
        + _json_list(
            [
                "/bin/sh",
                f"{ETC_DIR}/start.sh",
                "--listen",
                "0.0.0.0",  # noqa: S104 - a container serves on all its interfaces
                "--port",
                str(spec.port),
                "--",
            ]
        ),
        "CMD []",
    ]
    return lines


def render_containerfile(spec: ImageSpec) -> str:
    """Return the Containerfile (Dockerfile syntax) of the image, the same bytes for the same spec.

    Args:
        spec: The image.
    """
    target, plan = spec.target, spec.plan
    driver = f", CUDA driver {target.cuda_driver}" if target.cuda_driver else ""
    what = "CPU" if target.gpu == "none" else f"GPU compute capability {target.gpu}{driver}"
    header = [
        "# syntax=docker/dockerfile:1",
        f"# Generated by comfy-install {spec.tool_version} (`comfy-install image context`);"
        " regenerate it rather than edit it.",
        f"# Target: {what}, {target.platform}, Python {target.python}.",
        f"# Install plan: {plan.fingerprint}; lock: {plan.lock_name or 'none (resolved live)'}.",
        "",
        f"ARG BASE_IMAGE={spec.base}",
    ]
    if plan.source_builds:
        header.append(f"ARG TOOLKIT_IMAGE={spec.toolkit_image}")
    stages = [_base_stage(spec), _tool_stage(spec)]
    if plan.source_builds:
        stages.append(_accelerators_stage(spec))
    stages.append(_runtime_stage(spec))
    blocks = ["\n".join(header)] + ["\n".join(stage) for stage in stages]
    return "\n\n".join(blocks) + "\n"


def stage_names(spec: ImageSpec) -> list[str]:
    """Return the names of the Containerfile's stages, in build order.

    Args:
        spec: The image.
    """
    middle = ["accelerators"] if spec.plan.source_builds else []
    return ["base", "tool", *middle, "runtime"]


def image_plan(spec: ImageSpec, files: Sequence[ContextFile]) -> dict[str, Any]:
    """Return the plan of the image as JSON-ready data (`--dry-run`, `--json`, `image.json`).

    Args:
        spec: The image.
        files: The context's files, from
            [`context_files`][installer.image.containerfile.context_files].
    """
    plan = spec.plan
    return {
        "schema_version": IMAGE_SCHEMA_VERSION,
        "tool_version": spec.tool_version,
        "target": {
            "gpu": spec.target.gpu,
            "cuda_driver": spec.target.cuda_driver,
            "platform": spec.target.platform,
            "python": spec.target.python,
        },
        "base": spec.base,
        "tag": spec.tag,
        "stages": stage_names(spec),
        "toolkit_image": spec.toolkit_image if plan.source_builds else None,
        "port": spec.port,
        "user": f"{USER} ({UID}:{UID})",
        "volumes": {"models": MODELS_DIR, "tune": TUNE_DIR},
        "install_dir": INSTALL_DIR,
        "install_command": install_command(spec),
        "labels": labels(spec),
        "install_plan": {
            "fingerprint": plan.fingerprint,
            "torch": {
                "variant": plan.torch_variant,
                "index_url": plan.torch_index_url,
                "packages": list(plan.torch_packages),
            },
            "comfyui_ref": plan.comfyui_ref,
            "lock": {
                "name": plan.lock_name,
                "sha256": plan.lock_sha256,
                "reason": plan.lock_reason,
            },
            "source_builds": [
                {"name": entry.name, "requirement": entry.requirement}
                for entry in plan.source_builds
            ],
            "steps": [
                {"id": step, "action": action, "reason": reason}
                for step, action, reason in plan.steps
            ],
        },
        "context_files": [entry.path for entry in files],
    }


def context_files(spec: ImageSpec, wheel: Path) -> list[ContextFile]:
    """Return the build context's files, sorted by path; `image.json` describes the others.

    Args:
        spec: The image.
        wheel: This tool's wheel on the host (copied to `dist/`).
    """
    files = [
        ContextFile(CONTAINERFILE, text=render_containerfile(spec)),
        ContextFile(f"dist/{spec.wheel_name}", source=wheel),
        ContextFile(REQUIREMENTS_FILE, text=spec.tool_requirements),
        ContextFile("etc/extra_model_paths.yaml", text=extra_model_paths_yaml(MODELS_DIR)),
        ContextFile(START_SCRIPT, text=start_script(INSTALL_DIR, TUNE_DIR)),
        *spec.extra_files,
    ]
    described = sorted([*files, ContextFile(IMAGE_PLAN_FILE)], key=lambda f: f.path)
    document = json.dumps(image_plan(spec, described), indent=2, sort_keys=True) + "\n"
    plan_file = ContextFile(IMAGE_PLAN_FILE, text=document)
    return sorted([*files, plan_file], key=lambda f: f.path)
