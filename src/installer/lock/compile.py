"""Making a lock: resolve a target with `uv pip compile --generate-hashes` and sort the sections.

The input files are written to a scratch folder under names that say where each
requirement came from; uv's `# via` annotations then tell which section each
resolved package belongs to ([`split_sections`][installer.lock.compile.split_sections]).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from installer.core.errors import CommandFailedError, NetworkError, StepFailedError
from installer.core.lockfile import (
    SECTIONS,
    LockEntry,
    LockInputs,
    LockSources,
    parse_entries,
    render_lock,
)
from installer.edges.uv import TORCH_TRIO, Uv, is_network_failure
from installer.edges.uv_output import uv_failure_summary

_INPUT_FILES = {
    "comfyui-requirements.txt": "requirements",
    "extra-requirements.txt": "requirements",
    "step10-packages.txt": "optimizations",
}
_NODE_FILE_PREFIX = "custom-node-"


def split_sections(entries: Sequence[LockEntry]) -> dict[str, list[LockEntry]]:
    """Sort resolved entries into the sections of a lock, by who needs them.

    `requirements`: what ComfyUI's, the custom nodes' and the extra requirements
    need, not counting what they reach only through torch. `optimizations`:
    what step 10's packages need beyond that. `torch`: the torch trio and what
    only it needs (CUDA libraries, triton, sympy, ...).

    Args:
        entries: Every resolved entry, with its `via` (from
            [`parse_entries`][installer.core.lockfile.parse_entries]).

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


def _write(path: Path, content: str | Sequence[str]) -> Path:
    text = content if isinstance(content, str) else "\n".join(content) + "\n"
    path.write_text(text, encoding="utf-8")
    return path
