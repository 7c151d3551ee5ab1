"""Whether SageAttention can be built here from its pinned source, and how.

`pip_packages.sageattention_sources` in `dependencies.json` pins SageAttention 2
(and 3, for Blackwell) to a git commit. When no prebuilt wheel with a checksum
fits, the plan builds that commit on this machine, against the venv's torch,
if the machine can:

* the GPUs' compute capabilities are ones its kernels are dispatched for;
* torch is a CUDA build in the range it builds against, Python is in its range;
* a C++ compiler is found (MSVC's `cl.exe` on Windows) and a CUDA toolkit whose
  nvcc is at least the minimum its `setup.py` enforces for every GPU's
  architecture, and whose major version equals torch's CUDA major (torch's
  extension builder refuses a toolkit of another major version);
* git is there to clone it, the network when the clone (or the build itself)
  needs it, and memory for one compile job.

[`plan_source`][installer.plan.sage_sources.plan_source] answers that with the
reason, and, when it can, the build's settings: `TORCH_CUDA_ARCH_LIST` from every
GPU (`;`-separated: SageAttention's `setup.py` splits on `;` and `,` only, so a
space-separated list would silently build the first architecture alone), how many
compile jobs run at once (from the cores and the memory), and the expected time.
Pure: it reads data only.
"""

from __future__ import annotations

import math
import re

from packaging.version import Version
from pydantic import BaseModel, Field

from installer.core.config import SageAttentionSource
from installer.core.facts import BuildHost, GpuReport
from installer.plan.compat import Choice, first_outside, public_version, spec_contains


class PlannedSource(BaseModel):
    """A source build as the plan decided it: what is cloned, and how it is compiled."""

    url: str
    commit: str = Field(description="The pinned commit; the checkout is verified against it.")
    ref: str = ""
    subdirectory: str | None = None
    distribution: str
    nvcc: str = Field(description="The nvcc release that compiles it, e.g. '13.0'.")
    arch_list: str = Field(description="The architectures compiled for, ';'-separated.")
    build_env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables set for the build (TORCH_CUDA_ARCH_LIST, MAX_JOBS, EXT_PARALLEL).",
    )
    build_requires: list[str] = Field(default_factory=list)
    jobs: int = Field(description="Compile jobs at most at once.")
    expected_seconds: float | None = Field(
        default=None, description="Estimated build time on this machine; None when unknown."
    )
    estimate: str = Field(description="The expected build time, in words, with its basis.")
    fetches_during_build: list[str] = Field(default_factory=list)


def cuda_major(build: str | None) -> int | None:
    """Return the CUDA major version of a torch build name (`cu130` → 13, `cu128` → 12).

    Args:
        build: A build name like `cu128`; None or a non-CUDA name gives None.
    """
    match = re.fullmatch(r"cu([0-9]+)([0-9])", build or "")
    return int(match.group(1)) if match else None


def _is_remote(url: str) -> bool:
    """True for a URL git reaches over the network (https://, ssh://, git@host:path)."""
    if "://" in url:
        return not url.startswith("file://")
    return re.match(r"^[^/\\]+@[^:]+:", url) is not None


def _gib(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")


def _missing_tools(host: BuildHost, platform: str) -> str | None:
    compiler = "MSVC (cl.exe)" if platform == "windows" else "a C++ compiler"
    missing = [
        f"{name} ({tool.error})" if tool.error else name
        for name, tool in ((compiler, host.compiler), ("nvcc", host.nvcc))
        if not tool.ok
    ]
    if not missing:
        return None
    where = (
        "; install Visual Studio Build Tools (C++ workload) and the CUDA toolkit, and run "
        "from the Developer prompt"
        if platform == "windows"
        else ""
    )
    return f"building it needs {' and '.join(missing)}{where}"


def _check(
    source: SageAttentionSource,
    platform: str,
    gpu: GpuReport,
    torch_version: Version | str,
    torch_cuda: str | None,
    python_version: Version | str,
    host: BuildHost | None,
) -> str | None:
    """Return why the source cannot be built here, or None when it can."""
    if platform not in source.platforms:
        return f"not built on {platform} (configured for {', '.join(source.platforms)})"
    ccs = gpu.ccs
    if not ccs:
        return "no NVIDIA GPU"
    outside = first_outside(source.cc, ccs)
    if outside is not None:
        note = f": {source.cc_note}" if source.cc_note else ""
        return f"GPU is cc {outside}, outside its range {source.cc}{note}"
    if torch_cuda is None:
        return "torch is a CPU build"
    if not spec_contains(source.torch, torch_version):
        return f"builds against torch {source.torch}, torch is {public_version(torch_version)}"
    if not spec_contains(source.python, python_version):
        return f"needs Python {source.python}, the venv has {python_version} (see --python)"
    if source.arch_source == "local_gpu" and len(ccs) > 1:
        listed = ", ".join(str(cc) for cc in ccs)
        return f"compiles only for the GPU it sees while building; the GPUs here are cc {listed}"
    if host is None:
        return "source builds are not planned here"
    missing = _missing_tools(host, platform)
    if missing is not None:
        return missing
    nvcc = host.nvcc_version
    if nvcc is None:
        return f"nvcc {host.nvcc.version} is not a version this plan can compare"
    needed = max(ccs, key=lambda cc: source.min_nvcc_for(str(cc)))
    minimum = source.min_nvcc_for(str(needed))
    if nvcc < minimum:
        return (
            f"nvcc {nvcc} is older than {minimum}, which compute capability {needed} needs "
            f"(its setup.py)"
        )
    torch_major = cuda_major(torch_cuda)
    if torch_major is not None and nvcc.major != torch_major:
        return (
            f"nvcc {nvcc} is CUDA {nvcc.major}, torch {torch_cuda} is CUDA {torch_major}: torch's "
            "extension builder refuses a toolkit of another major version (install CUDA "
            f"{torch_major}.x ≥ {minimum}, or use a {nvcc.major}.x torch build)"
        )
    if not host.git.ok:
        return "git is needed to clone the source, and it was not found"
    if host.offline and _is_remote(source.url):
        return f"--offline: cloning {source.url} needs the network"
    if host.offline and source.fetches_during_build:
        return f"--offline: its build downloads {', '.join(source.fetches_during_build)}"
    per_job = source.memory_per_job_gib * len(ccs)
    if host.memory_total_bytes is not None and host.memory_total_bytes / 2**30 < per_job:
        return (
            f"one compile job needs about {_gib(per_job)} GiB of memory; this machine has "
            f"{_gib(host.memory_total_bytes / 2**30)} GiB"
        )
    return None


def _settings(
    source: SageAttentionSource, host: BuildHost, archs: list[str]
) -> tuple[dict[str, str], int, float | None, str]:
    """Return the build's variables, its jobs at once, and the expected time (and its basis)."""
    cores = max(1, host.cpu_count or 1)
    per_job = source.memory_per_job_gib * len(archs)
    by_memory = (
        math.floor(host.memory_total_bytes / 2**30 / per_job)
        if host.memory_total_bytes is not None
        else 2 * cores
    )
    # Compiling is CPU-bound but memory-hungry: up to twice the cores keeps every core busy
    # while nvcc waits on its sub-tools, and memory caps it so nothing is swapped or killed.
    at_once = max(1, min(2 * cores, by_memory))
    env: dict[str, str] = {}
    if source.arch_source == "arch_list":
        env["TORCH_CUDA_ARCH_LIST"] = ";".join(archs)
    if source.extensions_in_parallel:
        extensions = min(source.extensions_in_parallel, at_once)
        per_extension = max(1, min(cores, at_once // extensions))
        env["EXT_PARALLEL"] = str(extensions)
        env["MAX_JOBS"] = str(per_extension)
        jobs = extensions * per_extension
    else:
        jobs = max(1, min(cores, at_once))
        env["MAX_JOBS"] = str(jobs)
    measured = source.build_time
    if measured is None:
        return env, jobs, None, "build time not measured yet"
    used = min(cores, jobs, measured.cores)
    seconds = measured.seconds * measured.cores / used * len(archs) / measured.archs
    minutes = max(1, round(seconds / 60))
    basis = f"; {measured.measured}" if measured.measured else ""
    text = f"about {minutes} min on {cores} core{'s' if cores != 1 else ''}{basis}"
    return env, jobs, seconds, text


def plan_source(
    source: SageAttentionSource,
    *,
    platform: str,
    gpu: GpuReport,
    torch_version: Version | str,
    torch_cuda: str | None,
    python_version: Version | str,
    host: BuildHost | None,
) -> Choice[PlannedSource | None]:
    """Decide whether ``source`` can be built here; if so, with which settings.

    Args:
        source: The configured source entry.
        platform: The target OS.
        gpu: The GPUs (every one must be in the source's range).
        torch_version: The torch it is built against.
        torch_cuda: Torch's CUDA build (`cu130`); None for a CPU build.
        python_version: The venv's Python.
        host: The compilers, git, cores and memory of the machine; None: no build is planned.

    Returns:
        The planned build with a reason that says what is compiled and how long it takes, or None
        with the first reason the build is not possible.
    """
    problem = _check(source, platform, gpu, torch_version, torch_cuda, python_version, host)
    if problem is not None or host is None:
        return Choice(None, problem or "source builds are not planned here")
    archs = [str(cc) for cc in gpu.ccs]
    env, jobs, seconds, estimate = _settings(source, host, archs)
    nvcc = str(host.nvcc_version)
    sms = ", ".join("sm" + arch.replace(".", "") for arch in archs)
    where = f"for {sms}" if source.arch_source == "arch_list" else f"for the GPU it sees ({sms})"
    planned = PlannedSource(
        url=source.url,
        commit=source.commit,
        ref=source.ref,
        subdirectory=source.subdirectory,
        distribution=source.distribution,
        nvcc=nvcc,
        arch_list=";".join(archs),
        build_env=env,
        build_requires=list(source.build_requires),
        jobs=jobs,
        expected_seconds=seconds,
        estimate=estimate,
        fetches_during_build=list(source.fetches_during_build),
    )
    fetches = (
        f"; its build also downloads {', '.join(source.fetches_during_build)}"
        if source.fetches_during_build
        else ""
    )
    return Choice(
        planned,
        f"will COMPILE {source.distribution} @ {source.commit[:12]} with nvcc {nvcc} {where} "
        f"against torch {public_version(torch_version)} {torch_cuda} ({estimate}; up to {jobs} "
        f"compile jobs at once){fetches}",
    )
