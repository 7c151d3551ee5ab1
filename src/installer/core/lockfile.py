"""The lock file format: its header, its entries and sections, read, parsed and rendered as text.

A lock file (`locks/<platform>-<variant>-py<XY>.txt`) is the output of
`uv pip compile --generate-hashes`, split into the sections `requirements`,
`optimizations` and `torch` and preceded by a header of `# key: value` lines.
The first line records a hash of everything the lock was made from
(`# comfy-install lock v1 inputs-sha256=<hex>`); `config-sha256` is the part of
that hash the planner can compute without ComfyUI's `requirements.txt` at hand.

Everything here is a pure function of text and plain records, except the thin
wrappers that read one file ([`read_header`][installer.core.lockfile.read_header],
[`parse_lock`][installer.core.lockfile.parse_lock]) and find the shipped `locks/`
folder. Both the planner ([`installer.plan.lock`][installer.plan.lock]) and the
effectful lock feature ([`installer.lock`][installer.lock]) read these records.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from installer.core.errors import StepFailedError

LOCK_FORMAT = 1
DEFAULT_VARIANT = "default"
PYTHON_PLATFORMS: dict[str, str] = {
    "linux": "x86_64-manylinux_2_28",
    "windows": "x86_64-pc-windows-msvc",
}
SECTIONS = ("requirements", "optimizations", "torch")
SECTION_TITLES: dict[str, str] = {
    "requirements": "step 8 installs these: uv pip install --require-hashes --no-deps (torch held)",
    "optimizations": "step 10 pins the packages it installs to these (the lock as a constraint)",
    "torch": "step 7 pins torch's own dependencies to these (torch comes from the torch index)",
}
_FIRST_LINE = re.compile(
    r"^# comfy-install lock v(?P<format>[0-9]+) inputs-sha256=(?P<hash>[0-9a-f]{64})$"
)
_KEY_LINE = re.compile(r"^# (?P<key>[a-z0-9-]+): (?P<value>.*)$")
_SECTION_LINE = re.compile(r"^# \[(?P<name>[a-z0-9_-]+)\]")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


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
    file_sha256: str = ""
    """The sha256 of the whole file as read: two locks resolved from the same inputs (the same
    header) at other times may pin other versions; this tells them apart."""

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


def shipped_lock_dir() -> Path:
    """Return the folder of the lock files shipped with the package.

    Installed wheels carry them under `installer/_data/locks/`; a source
    checkout (editable install) reads the repository's `locks/`.
    """
    packaged = resources.files("installer") / "_data" / "locks"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "locks"


def requirements_sha256(text: str) -> str:
    """Return the sha256 of a requirements file's text, with line endings normalised.

    A Windows checkout may turn LF into CRLF; the lock must match it anyway.

    Args:
        text: The requirements file's content.

    Returns:
        The lower-case hex digest.
    """
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def read_header(path: Path) -> LockHeader | None:
    """Read the header of a lock file (its leading comment lines); None if it is not a lock.

    The whole file is hashed too ([`LockHeader.file_sha256`][installer.core.lockfile.LockHeader]).

    Args:
        path: The file to read.
    """
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
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
    return LockHeader(path, int(match.group("format")), match.group("hash"), target, values, digest)


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
        sections: Entries by section (from
            [`split_sections`][installer.lock.compile.split_sections]).
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
