"""The choice of the lock: which lock target an install has, its inputs, and whether a lock fits.

A lock covers one platform, torch variant and Python minor version
([`LockTarget`][installer.core.lockfile.LockTarget]). This module computes, from the
configuration alone, what a target's lock is made from
([`lock_inputs`][installer.plan.lock.lock_inputs]: the pins, the torch index, the index
packages step 10 installs for any NVIDIA GPU) and decides from lock headers read
beforehand whether the plan installs from a lock or resolves live
([`choose_lock`][installer.plan.lock.choose_lock]). Pure: no lock file is read here; the
headers come from [`installer.lock.files`][installer.lock.files].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from installer.core.config import PLATFORMS, Dependencies, ToolsManifest
from installer.core.errors import IntegrityError, UsageError
from installer.core.facts import gpu_override
from installer.core.lockfile import (
    DEFAULT_VARIANT,
    LOCK_FORMAT,
    PYTHON_PLATFORMS,
    LockHeader,
    LockInputs,
    LockTarget,
    NodePin,
    display_path,
)
from installer.plan.compat import requires_met, sass_for
from installer.plan.optimizations import plan_optimizations

LOCK_ARCHES = frozenset({"x86_64", "amd64", "x64"})
# Every NVIDIA compute capability in use: step 10's packages are locked for all of them.
NVIDIA_CCS = (
    "5.0", "5.2", "5.3", "6.0", "6.1", "6.2", "7.0", "7.2", "7.5", "8.0", "8.6",
    "8.7", "8.9", "9.0", "10.0", "10.3", "11.0", "12.0", "12.1",
)  # fmt: skip


@dataclass(frozen=True)
class TorchSource:
    """Where a lock target's torch comes from, and which build it is."""

    variant: str
    index_url: str | None
    cuda: str | None


@dataclass(frozen=True)
class LockChoice:
    """Whether an install uses a lock, which one, and why.

    Attributes:
        path: The lock to install from; None means resolve live.
        reason: What the plan shows: `locked (locks/…)` or `resolved live (…)`.
        inputs_hash: The configuration hash the plan expects (`config-sha256`);
            empty when no lock target applies.
        stale: True when a lock for the target exists but was made from other
            inputs (the plan warns and resolves live).
        lock_sha256: The chosen lock's `inputs-sha256` (for the step fingerprint).
        file_sha256: The sha256 of the chosen lock file's content (for the step fingerprint:
            a lock re-resolved to other pins keeps its `inputs-sha256`).
        target: The lock target's name, e.g. `linux-default-py312`.
        warning: What the plan warns about a stale lock (None otherwise).
    """

    path: Path | None
    reason: str
    inputs_hash: str
    stale: bool = False
    lock_sha256: str | None = None
    file_sha256: str | None = None
    target: str | None = None
    warning: str | None = None

    @property
    def locked(self) -> bool:
        """True when the install uses the lock."""
        return self.path is not None

    def step_input(self) -> dict[str, str | None]:
        """Return what goes into step 8's inputs (a new lock, or new pins in it, re-run it)."""
        inputs = {
            "lock": display_path(self.path) if self.path else None,
            "lock_sha256": self.lock_sha256,
        }
        if self.path is not None:
            # Only with a lock, so that an install resolved live keeps its fingerprint.
            inputs["lock_content_sha256"] = self.file_sha256
        return inputs


def python_minor(request: str) -> str | None:
    """Return ``X.Y`` for a Python request like `3.12` or `3.12.1`, None for a path or name.

    Args:
        request: A Python request: a version, an interpreter's path or a name.

    Returns:
        ``X.Y``, or None when ``request`` is not a version, has no minor part, or is older than
        Python 3.
    """
    try:
        version = Version(request)
    except InvalidVersion:
        return None
    if len(version.release) < 2 or version.release[0] < 3:
        return None
    return f"{version.release[0]}.{version.release[1]}"


def torch_source(deps: Dependencies, platform: str, variant: str) -> TorchSource:
    """Return the index and build of a torch variant (`default`: uv's default index).

    Args:
        deps: The configuration.
        platform: The target OS, `linux` or `windows`.
        variant: The torch variant's name, e.g. `cu128`; `default` takes the build from
            `torch.default_index_builds`.

    Raises:
        UsageError: The variant is not configured for ``platform``.
    """
    if variant == DEFAULT_VARIANT:
        builds = {str(key): value for key, value in deps.torch.default_index_builds.items()}
        build = builds.get(platform)
        return TorchSource(
            DEFAULT_VARIANT, None, build if build and build.startswith("cu") else None
        )
    for candidate in deps.torch.variants:
        if candidate.name == variant and platform in candidate.platforms:
            return TorchSource(
                candidate.name, candidate.index_url, candidate.name if candidate.is_cuda else None
            )
    names = [v.name for v in deps.torch.variants if platform in v.platforms]
    raise UsageError(
        f"--torch-variant {variant}: no such torch variant for {platform} "
        f"(configured: {', '.join(names) or 'none'}).",
        f"Use one of: {', '.join([*names, DEFAULT_VARIANT])}.",
    )


def step10_requirements(deps: Dependencies, target: LockTarget) -> list[str]:
    """Return the index packages step 10 installs for some NVIDIA GPU on ``target``.

    The plan of step 10 depends on the GPU; a lock covers every GPU, so this is
    the union of what [`plan_optimizations`][installer.plan.optimizations.plan_optimizations]
    installs from an index over every compute capability in use. Prebuilt
    SageAttention wheels are files checked against `tools_manifest.json`, and
    source builds are compiled on the machine: neither is locked.

    Args:
        deps: The configuration.
        target: The lock target.
    """
    source = torch_source(deps, target.platform, target.variant)
    if source.cuda is None:
        return []
    found: set[str] = set()
    for cc in distinct_ccs(deps, target.platform, source.cuda):
        planned = plan_optimizations(
            deps,
            ToolsManifest(schema_version=1),
            platform=target.platform,
            gpu=gpu_override(cc, None),
            torch_version=deps.torch.torch_version,
            torch_cuda=source.cuda,
            torch_index_url=source.index_url,
            python_version=target.python,
            allow_unverified=True,
        )
        for entry in planned:
            if (
                entry.action == "install"
                and entry.kind in ("package", "fallback")
                and not entry.builds_from_source
                and entry.requirement
            ):
                found.add(entry.requirement)
    return sorted(found, key=str.lower)


def _cc_tests(deps: Dependencies) -> tuple[list[str], list[list[str]]]:
    """Every test of a compute capability the configuration holds, found by field name.

    Returns:
        The ``requires`` terms and ``cc`` ranges (as ``cc`` terms), and the ``sass``
        kernel lists, wherever they are in the configuration.
    """
    terms: list[str] = []
    kernels: list[list[str]] = []

    def walk(value: Any, key: str | None) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, str(name))
        elif isinstance(value, list):
            if key == "sass":
                kernels.append([str(arch) for arch in value])
                return
            for item in value:
                walk(item, key)
        elif isinstance(value, str) and key == "requires":
            terms.append(value)
        elif isinstance(value, str) and key == "cc":
            terms.append(f"cc{value}")

    walk(deps.model_dump(mode="json"), None)
    return terms, kernels


def distinct_ccs(deps: Dependencies, platform: str, torch_cuda: str) -> list[str]:
    """Return one compute capability of each group step 10 plans alike, in NVIDIA_CCS order.

    With no build host (the lock's case: source builds are not locked), step 10's plan
    depends on the GPU only through the configuration's tests of its compute capability:
    ``requires`` terms, the ``cc`` ranges of wheels, sources and fallbacks, and the
    ``sass`` kernels of a build (a source's ``min_nvcc`` is read only for a build on a
    host). Two capabilities that pass and fail the same tests get the same plan, but for
    the words of its reasons, so the lock plans one of each group instead of all of
    NVIDIA_CCS.

    Args:
        deps: The configuration.
        platform: The lock target's platform (``PLATFORM:cc`` terms count there only).
        torch_cuda: The target's torch CUDA build.
    """
    terms, kernels = _cc_tests(deps)
    seen: dict[tuple[object, ...], str] = {}
    for cc in NVIDIA_CCS:
        gpu = gpu_override(cc, None)
        key = (
            tuple(requires_met([term], platform, gpu, torch_cuda).value for term in terms),
            tuple(sass_for(archs, Version(cc)) for archs in kernels),
        )
        seen.setdefault(key, cc)
    return list(seen.values())


def lock_inputs(deps: Dependencies, target: LockTarget) -> LockInputs:
    """Collect the configuration inputs of a lock target. Pure.

    Args:
        deps: The configuration.
        target: The lock target.

    Raises:
        UsageError: The target's variant is not configured.
    """
    source = torch_source(deps, target.platform, target.variant)
    return LockInputs(
        target=target,
        comfyui_ref=deps.comfyui.ref,
        comfyui_commit=deps.comfyui.commit,
        extra_requirements=tuple(deps.extra_requirements),
        custom_nodes=tuple(NodePin(n.name, n.commit, n.requirements) for n in deps.custom_nodes),
        torch_packages=tuple(deps.torch.packages),
        torch_index_url=source.index_url,
        step10=tuple(step10_requirements(deps, target)),
    )


def lock_status(header: LockHeader | None, expected_hash: str, target: LockTarget) -> LockChoice:
    """Decide from a lock's header whether it fits the plan. Pure.

    Args:
        header: The header of the lock for ``target`` (None: there is none).
        expected_hash: The `config-sha256` the plan computes for ``target``.
        target: The lock target of the plan.
    """
    if header is None:
        return LockChoice(
            None, f"resolved live (no lock for {target.name})", expected_hash, target=target.name
        )
    if header.format != LOCK_FORMAT:
        why = f"has lock format v{header.format}, this version reads v{LOCK_FORMAT}"
    elif header.config_sha256 != expected_hash:
        why = "is stale: it was made for other inputs"
    else:
        return LockChoice(
            header.path,
            f"locked ({display_path(header.path)})",
            expected_hash,
            lock_sha256=header.inputs_sha256,
            file_sha256=header.file_sha256 or None,
            target=target.name,
        )
    return _stale(header, why, expected_hash, target)


def _stale(header: LockHeader, why: str, expected_hash: str, target: LockTarget) -> LockChoice:
    shown = display_path(header.path)
    return LockChoice(
        None,
        f"resolved live ({shown} {why})",
        expected_hash,
        stale=True,
        target=target.name,
        warning=f"{shown} {why}; resolving live. Refresh it: {target.refresh_command()}",
    )


def choose_lock(
    deps: Dependencies,
    *,
    platform: str,
    variant: str,
    python: str,
    headers: Mapping[str, LockHeader],
    no_lock: bool = False,
    comfyui_commit: str | None = None,
    arch: str | None = None,
    problems: Mapping[str, str] | None = None,
    python_found: str | None = None,
) -> LockChoice:
    """Choose the lock for a plan, from lock headers read beforehand. Pure.

    Args:
        deps: The configuration.
        platform: The plan's target OS.
        variant: The plan's torch variant (`default` for uv's default index,
            `custom` for a `--torch-index URL`).
        python: The plan's Python request (`3.12`; a path matches no lock).
        headers: Lock headers by target name, from
            [`read_lock_headers`][installer.lock.files.read_lock_headers].
        no_lock: `--no-lock` was given.
        comfyui_commit: The commit the plan checks ComfyUI out at (None: a
            `--comfyui-ref` that is not a commit); a lock fits only the pin.
        arch: The machine's architecture, when known (locks are for x86_64).
        problems: Lock files that cannot be used, by target name (from
            [`lock_problems`][installer.lock.files.lock_problems]).
        python_found: The Python the python step found for this request when it is another
            minor version (it fell back: the requested one was not available); the lock is
            then chosen for that Python, and the plan says why.

    Raises:
        IntegrityError: The lock for the plan's target does not parse or fails its own
            check (exit code 4): installing from it, or silently without it, would both be
            wrong; the message names the file and the way out.
    """
    if no_lock:
        return LockChoice(None, "resolved live (--no-lock)", "")
    if comfyui_commit != deps.comfyui.commit:
        return LockChoice(
            None, "resolved live (ComfyUI is not at the pinned commit the locks are made for)", ""
        )
    minor = python_minor(python)
    found = python_minor(python_found) if python_found else None
    if found is not None and found != minor:
        fallback = LockTarget(platform, variant, found)
        if fallback.name not in headers:
            return LockChoice(
                None,
                f"resolved live (the venv has Python {python_found}: Python {python} was not "
                f"available when it was made, so the py{(minor or '').replace('.', '')} lock "
                f"no longer applies, and there is no lock for {fallback.name})",
                "",
            )
        minor = found
    if minor is None:
        return LockChoice(
            None,
            f"resolved live (Python {python!r} is not an X.Y version; locks are per Python)",
            "",
        )
    if platform not in PYTHON_PLATFORMS:
        return LockChoice(None, f"resolved live (no locks for {platform})", "")
    if arch is not None and arch.lower() not in LOCK_ARCHES:
        return LockChoice(None, f"resolved live (locks are for x86_64, this machine is {arch})", "")
    target = LockTarget(platform, variant, minor)
    problem = (problems or {}).get(target.name)
    if problem is not None:
        raise IntegrityError(
            f"The lock {problem}.",
            f"Regenerate it with `{target.refresh_command()}` (add --lock-dir for your own "
            "folder; the shipped locks come back with a reinstall of comfy-install), or pass "
            "--no-lock to resolve live.",
        )
    try:
        inputs = lock_inputs(deps, target)
    except UsageError:
        return LockChoice(
            None, f"resolved live (torch from {variant!r}: locks cover configured variants)", ""
        )
    header = headers.get(target.name)
    choice = lock_status(header, inputs.config_hash(), target)
    if choice.stale and header is not None and header.format == LOCK_FORMAT:
        changed = changed_inputs(header, inputs)
        if changed:
            return _stale(
                header, f"is stale: {', '.join(changed)} changed", choice.inputs_hash, target
            )
    return choice


def changed_inputs(header: LockHeader, inputs: LockInputs) -> list[str]:
    """Name the configuration inputs that differ between a lock's header and ``inputs``.

    Args:
        header: The lock's header (what it was resolved from).
        inputs: The configuration inputs now, from [`lock_inputs`][installer.plan.lock.lock_inputs].

    Returns:
        Names such as `ComfyUI commit` or `torch packages`; empty when all match.
    """
    recorded: dict[str, Any] = {
        "ComfyUI commit": header.values.get("comfyui-commit"),
        "extra_requirements": header.recorded("extra-requirements"),
        "custom nodes": [
            {k: v for k, v in node.items() if k != "requirements_sha256"}
            for node in (header.recorded("custom-nodes") or [])
            if isinstance(node, dict)
        ],
        "torch packages": header.recorded("torch-packages"),
        "torch index": header.torch_index_url,
        "step 10 packages": header.recorded("step-10-packages"),
    }
    document = inputs.config_document()
    current: dict[str, Any] = {
        "ComfyUI commit": inputs.comfyui_commit,
        "extra_requirements": document["extra_requirements"],
        "custom nodes": document["custom_nodes"],
        "torch packages": document["torch_packages"],
        "torch index": inputs.torch_index_url,
        "step 10 packages": document["step10"],
    }
    return [key for key in current if recorded[key] != current[key]]


def lock_targets(
    deps: Dependencies,
    *,
    platforms: Sequence[str] = (),
    variants: Sequence[str] = (),
    pythons: Sequence[str] = (),
) -> list[LockTarget]:
    """Return the lock targets the configuration supports, narrowed by the options.

    Args:
        deps: The configuration.
        platforms: `linux`/`windows` (empty: both).
        variants: Torch variants, `default` included (empty: every configured
            variant of each platform, and `default`).
        pythons: X.Y versions (empty: `python.default`).

    Raises:
        UsageError: An unknown platform, variant or unsupported Python.
    """
    for platform in platforms:
        if platform not in PLATFORMS:
            raise UsageError(f"--platform {platform}: expected linux or windows.")
    minors: list[str] = []
    for request in pythons or [deps.python.default]:
        minor = python_minor(request)
        if minor is None:
            raise UsageError(f"--python {request}: expected a version like 3.12.")
        if not deps.python.supported_contains(minor):
            raise UsageError(
                f"--python {request} is outside python.supported ({deps.python.supported})."
            )
        if minor not in minors:
            minors.append(minor)
    targets: list[LockTarget] = []
    for platform in platforms or PLATFORMS:
        configured = [v.name for v in deps.torch.variants if platform in v.platforms]
        chosen = list(variants) or [*configured, DEFAULT_VARIANT]
        for variant in chosen:
            torch_source(deps, platform, variant)
            targets.extend(LockTarget(platform, variant, minor) for minor in minors)
    return targets
