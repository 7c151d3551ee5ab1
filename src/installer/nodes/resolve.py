"""Resolving every node's requirements together with ComfyUI's, torch and the accelerators held.

One `uv pip compile --generate-hashes` over one input file per source (ComfyUI's
`requirements.txt`, the extra requirements, `custom-node-NAME.txt` for each node), the held
packages as `--constraint` (exact installed versions) and the venv's versions as preferences
(the output file uv starts from), for the venv's interpreter. uv's `# via` lines then say which
source needs each package; a failure is read back into the requirements it names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from installer.core.errors import CommandFailedError, NetworkError, ResolutionError
from installer.core.lockfile import LockEntry, parse_entries
from installer.edges.uv import Uv, is_network_failure
from installer.edges.uv_output import resolution_conflict, uv_failure_summary


@dataclass(frozen=True)
class ResolveRequest:
    """What one resolution is made of."""

    files: Mapping[str, Sequence[str]]
    """Requirement lines by input file name (`comfyui-requirements.txt`, `custom-node-X.txt`)."""
    held: Mapping[str, str]
    """Packages pinned exactly (the torch trio and the accelerators in the venv)."""
    preferences: Mapping[str, str]
    """Versions uv keeps where it can (the venv's distributions)."""
    python: Path
    """The venv's interpreter (its markers and version)."""
    extra_index_urls: Sequence[str] = ()
    constraints: Sequence[str] = ()
    """More constraint lines, written after the held pins (a lock's entries with markers)."""
    python_version: str | None = None
    """Resolve for this Python version instead of the interpreter's (an update to another
    Python: the interpreter still gives the platform's markers)."""


@dataclass(frozen=True)
class Resolution:
    """A resolution: its entries and its text (the lock entry format)."""

    entries: list[LockEntry]
    text: str


def resolve(uv: Uv, request: ResolveRequest, workdir: Path) -> Resolution:
    """Resolve the request with `uv pip compile --generate-hashes`.

    Args:
        uv: uv, bound to the index options.
        request: The inputs.
        workdir: A scratch folder (the input files and the output go there).

    Raises:
        ResolutionError: No resolution exists (its `conflict` says what uv named).
        NetworkError: An index could not be reached.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, lines in request.files.items():
        path = workdir / name
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        files.append(path)
    held = workdir / "held.txt"
    pinned = [f"{name}=={version}" for name, version in sorted(request.held.items())]
    held.write_text("".join(f"{line}\n" for line in [*pinned, *request.constraints]), "utf-8")
    output = workdir / "resolved.txt"
    output.write_text(
        "".join(f"{n}=={v}\n" for n, v in sorted(request.preferences.items())), "utf-8"
    )
    args: list[str | Path] = [
        "pip",
        "compile",
        *files,
        "--constraint",
        held,
        "--generate-hashes",
        "--no-header",
        "--annotation-style",
        "split",
        "--python",
        request.python,
        *(["--python-version", request.python_version] if request.python_version else []),
        "--output-file",
        output,
        *uv.index_args(request.extra_index_urls),
    ]
    try:
        uv.run(args, "uv pip compile (custom nodes)")
    except CommandFailedError as exc:
        if is_network_failure(exc.output):
            raise NetworkError(
                f"could not resolve the custom nodes' requirements: "
                f"{uv_failure_summary(exc.output)}",
                "Check that the indexes are reachable (or pass --index-url/--find-links), "
                "or run with --offline after a run with the network.",
            ) from exc
        conflict = resolution_conflict(exc.output)
        raise ResolutionError(
            f"uv found no resolution: {uv_failure_summary(exc.output)}", conflict
        ) from exc
    text = output.read_text(encoding="utf-8")
    return Resolution(parse_entries(text.splitlines()), text)
