"""Locked installs: one resolved, hash-pinned dependency set per platform, torch build and Python.

Without a lock, every install resolves ComfyUI's loose `requirements.txt`
against whatever the package index serves that day. A lock file
(`locks/<platform>-<variant>-py<XY>.txt`, shipped inside the wheel) holds the
answer instead: the output of `uv pip compile --generate-hashes` for ComfyUI's
requirements at the pinned commit, the custom nodes' requirements,
`extra_requirements` and the index packages of step 10, with the planned torch
trio as a constraint, for one target platform and Python. Every package is
pinned to one version and to the sha256 of its files.

The file is split into three sections. `requirements` is what step 8 installs
(`uv pip install --require-hashes --no-deps`: no resolution, every file
checked). `optimizations` and `torch` are only read as constraints: step 10
and step 7 pass the whole lock with `-c`, which pins the packages they install
to the locked versions and makes uv check their hashes, while torch itself
still comes from the planned index and is never touched by step 8.

The first line records a hash of everything the lock was made from
(`# comfy-install lock v1 inputs-sha256=<hex>`); further `# key: value` lines
record the inputs one by one, and `config-sha256`, the part of that hash the
planner can compute without ComfyUI's `requirements.txt` at hand. The planner
uses a lock only when its `config-sha256` matches
([`choose_lock`][installer.lock.choose_lock], pure, over headers read by
[`read_lock_headers`][installer.lock.read_lock_headers]); step 8 then compares
the cloned `requirements.txt` with the recorded sha256
([`lock_sources_mismatch`][installer.lock.lock_sources_mismatch]), and
`comfy-install lock --check` recomputes the whole hash to find stale locks.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from installer.config import PLATFORMS, Dependencies, RetryOptions, ToolsManifest
from installer.core.errors import (
    CommandFailedError,
    InstallerError,
    IntegrityError,
    NetworkError,
    StepFailedError,
    UsageError,
)
from installer.core.log import InstallerLogger, redact
from installer.edges.uv import TORCH_TRIO, Uv, is_network_failure

LOCK_FORMAT = 1
DEFAULT_VARIANT = "default"
PYTHON_PLATFORMS: dict[str, str] = {
    "linux": "x86_64-manylinux_2_28",
    "windows": "x86_64-pc-windows-msvc",
}
LOCK_ARCHES = frozenset({"x86_64", "amd64", "x64"})
SECTIONS = ("requirements", "optimizations", "torch")
SECTION_TITLES: dict[str, str] = {
    "requirements": "step 8 installs these: uv pip install --require-hashes --no-deps (torch held)",
    "optimizations": "step 10 pins the packages it installs to these (the lock as a constraint)",
    "torch": "step 7 pins torch's own dependencies to these (torch comes from the torch index)",
}
# Every NVIDIA compute capability in use: step 10's packages are locked for all of them.
NVIDIA_CCS = (
    "5.0", "5.2", "5.3", "6.0", "6.1", "6.2", "7.0", "7.2", "7.5", "8.0", "8.6",
    "8.7", "8.9", "9.0", "10.0", "10.3", "11.0", "12.0", "12.1",
)  # fmt: skip

_FIRST_LINE = re.compile(
    r"^# comfy-install lock v(?P<format>[0-9]+) inputs-sha256=(?P<hash>[0-9a-f]{64})$"
)
_KEY_LINE = re.compile(r"^# (?P<key>[a-z0-9-]+): (?P<value>.*)$")
_SECTION_LINE = re.compile(r"^# \[(?P<name>[a-z0-9_-]+)\]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
_HASH_MISMATCH = re.compile(r"hash mismatch for `(?P<what>[^`]+)`", re.IGNORECASE)
_INPUT_FILES = {
    "comfyui-requirements.txt": "requirements",
    "extra-requirements.txt": "requirements",
    "step10-packages.txt": "optimizations",
}
_NODE_FILE_PREFIX = "custom-node-"


@dataclass(frozen=True)
class LockTarget:
    """What one lock file is for: an OS, a torch build and a Python minor version."""

    platform: str
    variant: str
    python: str

    @property
    def name(self) -> str:
        """The target's name, e.g. `linux-default-py312`."""
        return f"{self.platform}-{self.variant}-py{self.python.replace('.', '')}"

    @property
    def filename(self) -> str:
        """The lock's file name, e.g. `linux-default-py312.txt`."""
        return f"{self.name}.txt"

    @property
    def python_platform(self) -> str:
        """The `uv --python-platform` the lock is resolved for."""
        return PYTHON_PLATFORMS[self.platform]

    def refresh_command(self, extra: Sequence[str] = ()) -> str:
        """Return the command that rewrites this lock (``extra``: further options).

        Args:
            extra: Shell-quoted words the command must repeat, e.g. ``--config my.json`` or
                ``--lock-dir DIR``.
        """
        words = [
            "comfy-install lock",
            f"--platform {self.platform}",
            f"--torch-variant {self.variant}",
            f"--python {self.python}",
            *extra,
        ]
        return " ".join(words)


@dataclass(frozen=True)
class TorchSource:
    """Where a lock target's torch comes from, and which build it is."""

    variant: str
    index_url: str | None
    cuda: str | None


@dataclass(frozen=True)
class NodePin:
    """A custom node as the lock sees it."""

    name: str
    commit: str
    requirements: bool


@dataclass(frozen=True)
class LockInputs:
    """Everything from the configuration that a lock target's resolution depends on."""

    target: LockTarget
    comfyui_ref: str
    comfyui_commit: str
    extra_requirements: tuple[str, ...]
    custom_nodes: tuple[NodePin, ...]
    torch_packages: tuple[str, ...]
    torch_index_url: str | None
    step10: tuple[str, ...]

    def config_document(self) -> dict[str, Any]:
        """Return the configuration part of the inputs as a JSON-ready document."""
        return {
            "format": LOCK_FORMAT,
            "platform": self.target.platform,
            "python": self.target.python,
            "comfyui_commit": self.comfyui_commit,
            "extra_requirements": sorted(self.extra_requirements),
            "custom_nodes": [
                {"name": n.name, "commit": n.commit, "requirements": n.requirements}
                for n in self.custom_nodes
            ],
            "torch_packages": list(self.torch_packages),
            "torch_variant": {"name": self.target.variant, "index_url": self.torch_index_url},
            "step10": list(self.step10),
        }

    def config_hash(self) -> str:
        """Return the sha256 of the configuration part (what the planner can check)."""
        return _sha256_json(self.config_document())

    def inputs_hash(self, sources: LockSources) -> str:
        """Return the sha256 of all inputs: the configuration and the requirement files.

        Args:
            sources: The requirement files read at the pinned commits.
        """
        document = {
            **self.config_document(),
            "comfyui_requirements_sha256": sources.comfyui_sha256,
            "custom_node_requirements_sha256": dict(sorted(sources.node_sha256s.items())),
        }
        return _sha256_json(document)


@dataclass(frozen=True)
class LockSources:
    """The requirement files a lock is made from, read at their pinned commits."""

    comfyui_requirements: str
    comfyui_read_commit: str
    node_requirements: dict[str, str | None] = field(default_factory=dict)

    @property
    def comfyui_sha256(self) -> str:
        """The sha256 of ComfyUI's `requirements.txt` (line endings normalised)."""
        return requirements_sha256(self.comfyui_requirements)

    @property
    def node_sha256s(self) -> dict[str, str | None]:
        """The sha256 of each custom node's `requirements.txt` (None: it has none)."""
        return {
            name: None if text is None else requirements_sha256(text)
            for name, text in self.node_requirements.items()
        }


@dataclass(frozen=True)
class LockHeader:
    """The header of a lock file: its target and the hashes of its inputs."""

    path: Path
    format: int
    inputs_sha256: str
    target: LockTarget
    values: dict[str, str]

    @property
    def config_sha256(self) -> str:
        """The hash of the configuration part of the inputs."""
        return self.values.get("config-sha256", "")

    @property
    def torch_index_url(self) -> str | None:
        """The torch variant's index the lock was resolved with (None: uv's default)."""
        value = self.values.get("torch-index", DEFAULT_VARIANT)
        return None if value == DEFAULT_VARIANT else value

    @property
    def comfyui_requirements_sha256(self) -> str:
        """The recorded sha256 of ComfyUI's `requirements.txt`."""
        return self.values.get("comfyui-requirements-sha256", "")

    @property
    def custom_node_requirements(self) -> dict[str, str | None]:
        """The recorded sha256 of each custom node's `requirements.txt`."""
        nodes = _json_value(self.values.get("custom-nodes", "[]"), [])
        return {
            str(node["name"]): node.get("requirements_sha256")
            for node in nodes
            if isinstance(node, dict) and "name" in node
        }

    def recorded(self, key: str) -> Any:
        """Return a recorded JSON value of the header (None when absent or unreadable).

        Args:
            key: A header key, e.g. `extra-requirements` or `custom-nodes`.
        """
        return _json_value(self.values.get(key, "null"), None)


@dataclass(frozen=True)
class LockEntry:
    """One pinned package of a lock: its requirement line, hashes and dependents."""

    name: str
    requirement: str
    hashes: tuple[str, ...]
    via: tuple[str, ...]

    def render(self) -> str:
        """Return the entry in pip's requirements format (hashes, then `# via`)."""
        lines = [self.requirement + (" \\" if self.hashes else "")]
        for index, digest in enumerate(self.hashes):
            last = index == len(self.hashes) - 1
            lines.append(f"    --hash={digest}" + ("" if last else " \\"))
        if len(self.via) == 1:
            lines.append(f"    # via {self.via[0]}")
        elif self.via:
            lines.append("    # via")
            lines.extend(f"    #   {item}" for item in self.via)
        return "\n".join(lines)


@dataclass(frozen=True)
class LockFile:
    """A parsed lock file: its header and its entries by section."""

    header: LockHeader
    sections: dict[str, list[LockEntry]]

    @property
    def entries(self) -> list[LockEntry]:
        """Every entry of every section."""
        return [entry for name in SECTIONS for entry in self.sections.get(name, [])]


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
        target: The lock target's name, e.g. `linux-default-py312`.
        warning: What the plan warns about a stale lock (None otherwise).
    """

    path: Path | None
    reason: str
    inputs_hash: str
    stale: bool = False
    lock_sha256: str | None = None
    target: str | None = None
    warning: str | None = None

    @property
    def locked(self) -> bool:
        """True when the install uses the lock."""
        return self.path is not None

    def step_input(self) -> dict[str, str | None]:
        """Return what goes into step 8's inputs (a new lock re-runs the step)."""
        return {
            "lock": display_path(self.path) if self.path else None,
            "lock_sha256": self.lock_sha256,
        }


@dataclass(frozen=True)
class LockWrite:
    """The result of writing one lock file."""

    target: LockTarget
    path: Path
    changed: bool
    packages: dict[str, int]
    size: int
    inputs_sha256: str


@dataclass(frozen=True)
class LockCheck:
    """The result of checking one lock file against the configuration."""

    target: LockTarget
    path: Path
    ok: bool
    reason: str


@dataclass(frozen=True)
class LockInstall:
    """What installing a lock's `requirements` section did."""

    path: Path
    packages: int
    seconds: float


def shipped_lock_dir() -> Path:
    """Return the folder of the lock files shipped with the package.

    Installed wheels carry them under `installer/_data/locks/`; a source
    checkout (editable install) reads the repository's `locks/`.
    """
    packaged = resources.files("installer") / "_data" / "locks"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "locks"


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


def requirements_sha256(text: str) -> str:
    """Return the sha256 of a requirements file's text, with line endings normalised.

    A Windows checkout may turn LF into CRLF; the lock must match it anyway.

    Args:
        text: The requirements file's content.

    Returns:
        The lower-case hex digest.
    """
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


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
    the union of what [`plan_optimizations`][installer.optimizations.plan_optimizations]
    installs from an index over every compute capability in use. Prebuilt
    SageAttention wheels are files checked against `tools_manifest.json`, and
    source builds are compiled on the machine: neither is locked.

    Args:
        deps: The configuration.
        target: The lock target.
    """
    from installer.core.facts import gpu_override
    from installer.optimizations import plan_optimizations

    source = torch_source(deps, target.platform, target.variant)
    if source.cuda is None:
        return []
    found: set[str] = set()
    for cc in NVIDIA_CCS:
        planned = plan_optimizations(
            deps,
            ToolsManifest(schema_version=1),
            platform=target.platform,
            gpu=gpu_override(cc, None),
            torch_version=deps.torch.torch_version,
            torch_cuda=source.cuda,
            torch_index_url=source.index_url,
            python_version=target.python,
            build_tools=(False, False),
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
) -> LockChoice:
    """Choose the lock for a plan, from lock headers read beforehand. Pure.

    Args:
        deps: The configuration.
        platform: The plan's target OS.
        variant: The plan's torch variant (`default` for uv's default index,
            `custom` for a `--torch-index URL`).
        python: The plan's Python request (`3.12`; a path matches no lock).
        headers: Lock headers by target name, from
            [`read_lock_headers`][installer.lock.read_lock_headers].
        no_lock: `--no-lock` was given.
        comfyui_commit: The commit the plan checks ComfyUI out at (None: a
            `--comfyui-ref` that is not a commit); a lock fits only the pin.
        arch: The machine's architecture, when known (locks are for x86_64).
    """
    if no_lock:
        return LockChoice(None, "resolved live (--no-lock)", "")
    if comfyui_commit != deps.comfyui.commit:
        return LockChoice(
            None, "resolved live (ComfyUI is not at the pinned commit the locks are made for)", ""
        )
    minor = python_minor(python)
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
        inputs: The configuration inputs now, from [`lock_inputs`][installer.lock.lock_inputs].

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


def read_header(path: Path) -> LockHeader | None:
    """Read the header of a lock file (its leading comment lines); None if it is not a lock.

    Args:
        path: The file to read.
    """
    try:
        with path.open(encoding="utf-8") as handle:
            first = handle.readline().rstrip("\n")
            match = _FIRST_LINE.match(first)
            if match is None:
                return None
            values: dict[str, str] = {}
            for line in handle:
                if not line.startswith("#"):
                    break
                key_line = _KEY_LINE.match(line.rstrip("\n"))
                if key_line:
                    values.setdefault(key_line.group("key"), key_line.group("value"))
    except (OSError, UnicodeDecodeError):
        return None
    target = LockTarget(
        values.get("platform", ""), values.get("torch-variant", ""), values.get("python", "")
    )
    return LockHeader(path, int(match.group("format")), match.group("hash"), target, values)


def read_lock_headers(lock_dir: Path) -> dict[str, LockHeader]:
    """Read the header of every lock file in ``lock_dir``, by target name.

    Args:
        lock_dir: The folder of lock files (the shipped `locks/` or `--lock-dir`); a file whose name
            does not match its header's target is ignored.

    Returns:
        Headers by target name, e.g. `linux-default-py312`; ``{}`` for no folder.
    """
    headers: dict[str, LockHeader] = {}
    try:
        files = sorted(lock_dir.glob("*.txt"))
    except OSError:
        return headers
    for path in files:
        header = read_header(path)
        if header is not None and path.name == header.target.filename:
            headers[header.target.name] = header
    return headers


def find_lock(lock_dir: Path, target: LockTarget) -> LockHeader | None:
    """Read the header of the lock for ``target`` in ``lock_dir`` (None: no such lock).

    Args:
        lock_dir: The folder of lock files.
        target: The lock target; the file's header must name the same one.
    """
    header = read_header(lock_dir / target.filename)
    if header is None or header.target != target:
        return None
    return header


def lock_choice(
    deps: Dependencies, platform: str, variant: str, python: str, lock_dir: Path
) -> LockChoice:
    """Find the lock for a target in ``lock_dir`` and say whether it fits ``deps``.

    Args:
        deps: The configuration.
        platform: Target OS.
        variant: Torch variant (`default`: uv's default index).
        python: Python version (`3.12`).
        lock_dir: Where the lock files are.
    """
    minor = python_minor(python)
    headers: dict[str, LockHeader] = {}
    if minor is not None and platform in PYTHON_PLATFORMS:
        target = LockTarget(platform, variant, minor)
        header = find_lock(lock_dir, target)
        if header is not None:
            headers[target.name] = header
    return choose_lock(
        deps,
        platform=platform,
        variant=variant,
        python=python,
        headers=headers,
        comfyui_commit=deps.comfyui.commit,
    )


def parse_lock(path: Path) -> LockFile:
    """Read a whole lock file: its header and its entries by section.

    Args:
        path: The lock file.

    Raises:
        StepFailedError: The file is missing or is not a comfy-install lock.
    """
    header = read_header(path)
    if header is None:
        raise StepFailedError(
            f"{path} is not a comfy-install lock file (or cannot be read).",
            "Regenerate it with `comfy-install lock`, or install with --no-lock.",
        )
    text = path.read_text(encoding="utf-8")
    sections: dict[str, list[LockEntry]] = {name: [] for name in SECTIONS}
    current = "requirements"
    body: list[str] = []
    for line in text.splitlines():
        marker = _SECTION_LINE.match(line)
        if marker:
            sections.setdefault(current, []).extend(parse_entries(body))
            body = []
            current = marker.group("name")
            continue
        body.append(line)
    sections.setdefault(current, []).extend(parse_entries(body))
    return LockFile(header, sections)


def parse_entries(lines: Iterable[str]) -> list[LockEntry]:
    """Parse `uv pip compile --generate-hashes` output (split annotations) into entries.

    Args:
        lines: Lines of uv's output, or of one section of a lock file.

    Returns:
        One entry per requirement line: its canonical name, the line, its hashes and the `# via`
        names.
    """
    entries: list[LockEntry] = []
    requirement: str | None = None
    hashes: list[str] = []
    via: list[str] = []
    in_via = False

    def flush() -> None:
        if requirement is not None:
            match = _NAME.match(requirement)
            name = canonicalize_name(match.group(0)) if match else requirement
            entries.append(LockEntry(name, requirement, tuple(hashes), tuple(via)))

    for raw in lines:
        line = raw.rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            if line.startswith("#"):
                in_via = False
                continue
            flush()
            requirement, hashes, via, in_via = line.removesuffix("\\").strip(), [], [], False
            continue
        stripped = line.strip()
        if stripped.startswith("--hash="):
            hashes.append(stripped.removeprefix("--hash=").removesuffix("\\").strip())
        elif stripped == "# via":
            in_via = True
        elif stripped.startswith("# via "):
            via.append(_via_name(stripped.removeprefix("# via ")))
            in_via = False
        elif in_via and stripped.startswith("#   "):
            via.append(_via_name(stripped.removeprefix("#").strip()))
    flush()
    return entries


def _via_name(item: str) -> str:
    """Shorten `-r /tmp/x/comfyui-requirements.txt` to `-r comfyui-requirements.txt`."""
    item = item.strip()
    for flag in ("-r ", "-c "):
        if item.startswith(flag):
            return flag + Path(item[len(flag) :].strip()).name
    return item


def split_sections(entries: Sequence[LockEntry]) -> dict[str, list[LockEntry]]:
    """Sort resolved entries into the sections of a lock, by who needs them.

    `requirements`: what ComfyUI's, the custom nodes' and the extra requirements
    need, not counting what they reach only through torch. `optimizations`:
    what step 10's packages need beyond that. `torch`: the torch trio and what
    only it needs (CUDA libraries, triton, sympy, ...).

    Args:
        entries: Every resolved entry, with its `via` (from
            [`parse_entries`][installer.lock.parse_entries]).

    Returns:
        Entries by section name, in `SECTIONS` order, each sorted by name.
    """
    by_name = {entry.name: entry for entry in entries}
    children: dict[str, set[str]] = defaultdict(set)
    roots: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        for item in entry.via:
            if item.startswith("-r "):
                file = item[3:]
                group = _INPUT_FILES.get(file)
                if group is None and file.startswith(_NODE_FILE_PREFIX):
                    group = "requirements"
                roots[group or "requirements"].add(entry.name)
            elif not item.startswith("-"):
                children[canonicalize_name(item)].add(entry.name)
    held = set(TORCH_TRIO)

    def closure(start: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        stack = [name for name in start if name not in held]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(child for child in children.get(name, ()) if child not in held)
        return seen

    requirements = closure(roots["requirements"])
    optimizations = closure(roots["optimizations"]) - requirements
    sections: dict[str, list[LockEntry]] = {name: [] for name in SECTIONS}
    for name in sorted(by_name):
        section = (
            "requirements"
            if name in requirements
            else "optimizations"
            if name in optimizations
            else "torch"
        )
        sections[section].append(by_name[name])
    return sections


def render_lock(
    inputs: LockInputs,
    sources: LockSources,
    sections: Mapping[str, Sequence[LockEntry]],
    *,
    resolver: str,
) -> str:
    """Return the text of a lock file: the header, then each section's entries.

    Args:
        inputs: The configuration inputs.
        sources: The requirement files it was resolved from.
        sections: Entries by section (from [`split_sections`][installer.lock.split_sections]).
        resolver: What resolved it, e.g. `uv 0.9.5`.
    """
    target = inputs.target
    nodes = [
        {
            "name": node.name,
            "commit": node.commit,
            "requirements": node.requirements,
            "requirements_sha256": sources.node_sha256s.get(node.name),
        }
        for node in inputs.custom_nodes
    ]
    lines = [
        f"# comfy-install lock v{LOCK_FORMAT} inputs-sha256={inputs.inputs_hash(sources)}",
        "# Resolved, hash-pinned dependencies of one install target. Generated: do not edit.",
        f"# Refresh: {target.refresh_command()}",
        "# Check:   comfy-install lock --check",
        f"# target: {target.name}",
        f"# platform: {target.platform}",
        f"# python-platform: {target.python_platform}",
        f"# python: {target.python}",
        f"# torch-variant: {target.variant}",
        f"# torch-index: {inputs.torch_index_url or DEFAULT_VARIANT}",
        f"# torch-packages: {_json(list(inputs.torch_packages))}",
        f"# comfyui-ref: {inputs.comfyui_ref}",
        f"# comfyui-commit: {inputs.comfyui_commit}",
        f"# comfyui-requirements-sha256: {sources.comfyui_sha256}",
    ]
    if sources.comfyui_read_commit != inputs.comfyui_commit:
        lines.append(
            f"# comfyui-requirements-read-at: {sources.comfyui_read_commit} "
            "(a checkout with the same requirements.txt)"
        )
    lines += [
        f"# extra-requirements: {_json(sorted(inputs.extra_requirements))}",
        f"# custom-nodes: {_json(nodes)}",
        f"# step-10-packages: {_json(list(inputs.step10))}",
        f"# config-sha256: {inputs.config_hash()}",
        f"# resolver: {resolver}",
        "# counts: " + ", ".join(f"{name} {len(sections.get(name, ()))}" for name in SECTIONS),
    ]
    for name in SECTIONS:
        lines += ["#", f"# [{name}] {SECTION_TITLES[name]}"]
        lines += [entry.render() for entry in sections.get(name, ())]
    return "\n".join(lines) + "\n"


def read_sources(
    deps: Dependencies,
    workdir: Path,
    log: InstallerLogger,
    *,
    comfyui_url: str | None = None,
    comfyui_ref: str | None = None,
) -> LockSources:
    """Clone ComfyUI and the custom nodes at their pins and read their requirement files.

    Args:
        deps: The configuration (its pins).
        workdir: An empty scratch folder for the clones.
        log: Logger for git's output.
        comfyui_url: Clone ComfyUI from here instead of `comfyui.url` (a
            mirror, a local clone or a git bundle).
        comfyui_ref: Read `requirements.txt` at this ref instead of the pinned
            commit, for a source that lacks the commit but has the same tree
            (the lock still records the pinned commit, and the file's sha256).

    Raises:
        StepFailedError: A clone or checkout failed, or a file is missing.
    """
    from installer.edges.git import checkout_pinned

    url = comfyui_url or deps.comfyui.url
    target = comfyui_ref or deps.comfyui.commit
    expected = None if comfyui_ref else deps.comfyui.commit
    dest = workdir / "ComfyUI"
    try:
        commit = checkout_pinned(dest, url, target, log, expected=expected)
    except InstallerError as exc:
        raise StepFailedError(
            f"Could not read ComfyUI's requirements.txt at {target} from {redact(url)}: "
            f"{exc.message}",
            "Pass --comfyui-url with a reachable clone, mirror or git bundle (and "
            "--comfyui-ref REF if it lacks the pinned commit but has the same tree).",
        ) from exc
    requirements = _read_text(dest / "requirements.txt")
    nodes: dict[str, str | None] = {}
    for node in deps.custom_nodes:
        if not node.requirements:
            nodes[node.name] = None
            continue
        node_dir = workdir / "custom_nodes" / node.name
        try:
            checkout_pinned(node_dir, node.url, node.commit, log, expected=node.commit)
        except InstallerError as exc:
            raise StepFailedError(
                f"Could not read the requirements of custom node {node.name} at "
                f"{node.commit[:12]} from {redact(node.url)}: {exc.message}",
                "Check the node's url and commit in dependencies.json and the network.",
            ) from exc
        file = node_dir / "requirements.txt"
        nodes[node.name] = _read_text(file) if file.is_file() else None
    return LockSources(requirements, commit, nodes)


def compile_lock(
    uv: Uv,
    inputs: LockInputs,
    sources: LockSources,
    workdir: Path,
    *,
    resolver: str,
) -> str:
    """Resolve a lock target with `uv pip compile --generate-hashes`; return the lock text.

    Args:
        uv: uv, bound to the index options (mirror, find-links) to resolve against.
        inputs: The configuration inputs of the target.
        sources: The requirement files.
        workdir: A scratch folder for the input files.
        resolver: Text for the header's `resolver` line.

    Raises:
        NetworkError: An index could not be reached (`could not resolve …`).
        StepFailedError: No resolution exists, or uv failed otherwise.
    """
    target = inputs.target
    workdir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = [_write(workdir / "comfyui-requirements.txt", sources.comfyui_requirements)]
    if inputs.extra_requirements:
        files.append(_write(workdir / "extra-requirements.txt", inputs.extra_requirements))
    for name, text in sorted(sources.node_requirements.items()):
        if text is not None:
            files.append(_write(workdir / f"{_NODE_FILE_PREFIX}{name}.txt", text))
    if inputs.step10:
        files.append(_write(workdir / "step10-packages.txt", inputs.step10))
    constraints = _write(workdir / "torch-constraints.txt", inputs.torch_packages)
    output = workdir / "resolved.txt"
    extra = [inputs.torch_index_url] if inputs.torch_index_url else []
    args: list[str | Path] = [
        "pip",
        "compile",
        *files,
        "--constraint",
        constraints,
        "--generate-hashes",
        "--no-header",
        "--annotation-style",
        "split",
        "--python-platform",
        target.python_platform,
        "--python-version",
        target.python,
        "--no-python-downloads",
        "--output-file",
        output,
        *uv.index_args(extra),
    ]
    try:
        uv.run(args, f"uv pip compile ({target.name})")
    except CommandFailedError as exc:
        summary = uv_failure_summary(exc.output)
        if is_network_failure(exc.output):
            raise NetworkError(
                f"could not resolve {target.name}: {summary}",
                "Check that the indexes are reachable (or pass --index-url/--find-links).",
            ) from exc
        raise StepFailedError(
            f"could not resolve {target.name}: {summary}",
            "Read uv's reason above; a requirement may have no release for this "
            "platform and Python.",
        ) from exc
    entries = parse_entries(output.read_text(encoding="utf-8").splitlines())
    return render_lock(inputs, sources, split_sections(entries), resolver=resolver)


def write_lock(lock_dir: Path, target: LockTarget, text: str) -> LockWrite:
    """Write a lock file atomically; say whether its content changed.

    Args:
        lock_dir: The folder the lock goes in (created when missing).
        target: The lock target; it names the file.
        text: The whole lock file, from [`render_lock`][installer.lock.render_lock].

    Raises:
        EnvironmentUnsupportedError: The folder is not writable.
    """
    from installer.edges.state import atomic_write_text

    path = lock_dir / target.filename
    try:
        old = path.read_text(encoding="utf-8")
    except OSError:
        old = None
    if old != text:
        atomic_write_text(path, text)
        # A lock is a shipped, shared file: readable by all (atomic writes create 0600 files).
        path.chmod(0o644)
    header = read_header(path)
    lock = parse_lock(path)
    return LockWrite(
        target=target,
        path=path,
        changed=old != text,
        packages={name: len(entries) for name, entries in lock.sections.items()},
        size=len(text.encode("utf-8")),
        inputs_sha256=header.inputs_sha256 if header else "",
    )


def check_lock(header: LockHeader, deps: Dependencies, sources: LockSources) -> LockCheck:
    """Compare a lock's recorded inputs hash with the one the configuration gives now.

    Args:
        header: The lock's header.
        deps: The configuration now.
        sources: The requirement files now.
    """
    target = header.target
    if header.format != LOCK_FORMAT:
        return LockCheck(target, header.path, False, f"lock format v{header.format}")
    if target.platform not in PYTHON_PLATFORMS:
        return LockCheck(target, header.path, False, f"unknown platform {target.platform!r}")
    if not deps.python.supported_contains(target.python):
        return LockCheck(
            target,
            header.path,
            False,
            f"Python {target.python} is outside python.supported ({deps.python.supported}); "
            "delete the file",
        )
    try:
        inputs = lock_inputs(deps, target)
    except UsageError:
        return LockCheck(
            target,
            header.path,
            False,
            f"torch variant {target.variant} is no longer configured for {target.platform}; "
            "delete the file",
        )
    if header.inputs_sha256 == inputs.inputs_hash(sources):
        return LockCheck(target, header.path, True, "up to date")
    changed = changed_inputs(header, inputs)
    if header.comfyui_requirements_sha256 != sources.comfyui_sha256:
        changed.append("ComfyUI's requirements.txt")
    if header.custom_node_requirements != {name: sha for name, sha in sources.node_sha256s.items()}:
        changed.append("custom node requirements")
    what = ", ".join(changed) or "its inputs"
    return LockCheck(target, header.path, False, f"{what} changed since it was made")


def lock_sources_mismatch(
    lock_path: Path, comfyui_dir: Path, custom_nodes_dir: Path | None = None
) -> str | None:
    """Compare the requirement files of an install with those a lock was made from.

    Step 8 calls this before installing from a lock: the plan matched the pins,
    this checks the files themselves.

    Args:
        lock_path: The lock.
        comfyui_dir: The ComfyUI checkout.
        custom_nodes_dir: Its `custom_nodes` folder (default: inside ``comfyui_dir``).

    Returns:
        None when they match, else what differs (then resolve live, with a warning).
    """
    header = read_header(lock_path)
    if header is None:
        return f"{lock_path} is not a comfy-install lock file"
    try:
        text = (comfyui_dir / "requirements.txt").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return f"{comfyui_dir / 'requirements.txt'} cannot be read"
    if requirements_sha256(text) != header.comfyui_requirements_sha256:
        return f"ComfyUI's requirements.txt differs from the one {lock_path.name} was made from"
    nodes_dir = custom_nodes_dir or comfyui_dir / "custom_nodes"
    for name, recorded in header.custom_node_requirements.items():
        if recorded is None:
            continue
        file = nodes_dir / name / "requirements.txt"
        if not file.is_file():
            continue
        if requirements_sha256(file.read_text(encoding="utf-8")) != recorded:
            return f"custom node {name}'s requirements.txt differs from the locked one"
    return None


def install_from_lock(
    uv: Uv,
    python_exe: Path,
    lock_path: Path,
    constraints_path: Path,
    log: InstallerLogger,
) -> LockInstall:
    """Install a lock's `requirements` section: every file hash-checked, nothing resolved.

    Runs `uv pip install --require-hashes --no-deps -r SECTION -c CONSTRAINTS`
    with the index view the lock was made with (its torch index, if any, as a
    priority extra index). uv downloads and checks every file before it
    installs any, so a hash mismatch leaves the venv as it was. Distributions
    already in the venv at the locked version are kept (uv does not re-hash
    installed files).

    Args:
        uv: uv, bound to the plan's index options.
        python_exe: The venv's interpreter.
        lock_path: The lock file.
        constraints_path: The torch constraints file (the installed trio); it
            makes uv refuse, never replace, a locked torch that differs.
        log: Logger.

    Returns:
        The lock, the number of packages in the section and the seconds taken.

    Raises:
        IntegrityError: A file does not match its locked sha256 (exit code 4).
        StepFailedError: The lock is unreadable, made for another Python, or
            uv failed otherwise.
        NetworkError: The index could not be reached.
    """
    from installer.edges.probe import venv_version
    from installer.edges.state import atomic_write_text

    lock = parse_lock(lock_path)
    venv_python = venv_version(python_exe.parent.parent)
    if venv_python is not None and python_minor(venv_python) != lock.header.target.python:
        raise StepFailedError(
            f"{lock_path.name} is for Python {lock.header.target.python}, the venv has "
            f"Python {venv_python}.",
            "Install with --no-lock, or make a lock for this Python with "
            f"`comfy-install lock --python {python_minor(venv_python)}`.",
        )
    entries = lock.sections.get("requirements", [])
    start = time.monotonic()
    if not entries:
        log.info(f"{lock_path.name}: no packages in its requirements section")
        return LockInstall(lock_path, 0, 0.0)
    section = constraints_path.parent / "locked-requirements.txt"
    atomic_write_text(
        section,
        f"# The requirements section of {lock_path.name} (inputs-sha256="
        f"{lock.header.inputs_sha256}).\n" + "\n".join(e.render() for e in entries) + "\n",
    )
    extra = [lock.header.torch_index_url] if lock.header.torch_index_url else []
    what = f"install the locked requirements ({lock_path.name})"
    try:
        uv.pip_install(
            python_exe,
            requirement_files=[section],
            constraints=[constraints_path] if constraints_path.is_file() else [],
            options=["--require-hashes", "--no-deps"],
            extra_index_urls=extra,
            what=what,
            # uv retries requests itself; a second attempt here would only repeat a hash mismatch.
            retry=RetryOptions(attempts=1, backoff_seconds=0),
        )
    except InstallerError as exc:
        mismatch = integrity_error(exc, lock_path)
        if mismatch is not None:
            raise mismatch from exc
        raise
    seconds = time.monotonic() - start
    log.info(f"{len(entries)} locked packages from {lock_path.name}, hashes checked")
    return LockInstall(lock_path, len(entries), seconds)


def integrity_error(error: BaseException, lock_path: Path | None = None) -> IntegrityError | None:
    """Turn a uv failure caused by a hash mismatch into an IntegrityError (exit code 4).

    Args:
        error: The error raised around a uv call (its cause chain is searched
            for uv's output).
        lock_path: The lock the hashes came from, for the message.

    Returns:
        The IntegrityError to raise, or None when the failure was not a hash mismatch.
    """
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, CommandFailedError):
            output = current.output
            match = _HASH_MISMATCH.search(output)
            if match is None:
                return None
            digests = re.findall(r"sha256:([0-9a-f]{64})", output)
            detail = ""
            if len(digests) >= 2:
                detail = f" (expected sha256 {digests[0][:16]}…, got {digests[-1][:16]}…)"
            source = f" in {lock_path.name}" if lock_path else ""
            return IntegrityError(
                f"{match.group('what')} does not match its sha256{source}{detail}; "
                "nothing was installed.",
                "The index served a different file than the one locked. Do not use it; "
                "if the upstream file really changed, check why before refreshing the lock "
                "with `comfy-install lock`.",
            )
        current = current.__cause__
    return None


def uv_failure_summary(output: str) -> str:
    """Return uv's error in one line: the `error:` line and its first and last causes.

    Args:
        output: uv's combined output.

    Returns:
        The summary, secrets redacted. Without an `error:` line: uv's last line, or `uv failed
        without output` when it printed nothing.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    if start is None:
        return lines[-1] if lines else "uv failed without output"
    head = lines[start].removeprefix("error:").strip()
    causes = [line.removeprefix("cause:").strip() for line in lines[start + 1 :]]
    causes = [cause for cause in causes if cause and not cause.startswith("hint:")]
    if not causes:
        return redact(head)
    shown = [causes[0]] if len(causes) == 1 else [causes[0], causes[-1]]
    if head.endswith(":"):
        return redact(head + " " + "; ".join(shown))
    return redact(f"{head}: {'; '.join(shown)}")


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


def display_path(path: Path) -> str:
    """Return how a lock's path is shown: `locks/NAME` for a shipped lock, else the path.

    Args:
        path: The lock file.
    """
    try:
        if path.parent.resolve() == shipped_lock_dir().resolve():
            return f"locks/{path.name}"
    except OSError:
        pass
    return str(path)


def _sha256_json(document: Any) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


def _json_value(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StepFailedError(
            f"{path} cannot be read: {exc}.", "Check that the checkout is ComfyUI."
        ) from exc


def _write(path: Path, content: str | Sequence[str]) -> Path:
    text = content if isinstance(content, str) else "\n".join(content) + "\n"
    path.write_text(text, encoding="utf-8")
    return path
