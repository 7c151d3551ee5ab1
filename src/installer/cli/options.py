"""Every option of the command line, defined once and grouped by concern.

The model is pdm's `src/pdm/cli/options.py`: an option that several commands take is
declared here once, as a typer `Annotated` alias, and each command lists the aliases
it takes (`config: ConfigOpt = None`). The groups:

- **output**: `--json`, `--verbose`, `--quiet`, `--yes`, `--dry-run`;
- **where**: `DIR` (and its default), `--config`, `--tools-manifest`, `--lock-dir`,
  `--no-lock`;
- **target machine**: `--gpu`, `--cuda-driver`, `--cuda-toolkit`, `--platform`, `--python`,
  `--port`;
- **ComfyUI source**: `--comfyui-url`, `--comfyui-ref`;
- **package indexes**: `--torch-index`, `--index-url`, `--extra-index-url`,
  `--find-links`, `--offline`, `--allow-unverified`, `--allow-install-script`;
- **steps**: `--only`, `--skip`, `--force`.

Where a command gives an option a narrower meaning (lock's `--platform` defaults to
both; an image's `--gpu` is required), the variant is declared here too, next to the
common one, so one file shows every spelling of every flag.
[`build_request`][installer.cli.options.build_request] turns the parsed values into the
command's request, by keyword: a command's parameters are named like its request's
fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

R = TypeVar("R")

DEFAULT_DIR = Path("ComfyUI-install")

# --- output -----------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show more detail (the output of uv, git, engines).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would be done (the plan); change nothing.")
]

# --- where: the install, the configuration, the locks ----------------------------------

DirArg = Annotated[Path, typer.Argument(help="Install directory.", show_default=True)]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Another dependencies.json (an image copies it in)."),
]
ToolsManifestOpt = Annotated[
    Path | None,
    typer.Option("--tools-manifest", help="Another tools_manifest.json (artifact checksums)."),
]
LockDirOpt = Annotated[
    Path | None,
    typer.Option("--lock-dir", help="Folder of lock files (default: the shipped locks/)."),
]
NoLockOpt = Annotated[
    bool, typer.Option("--no-lock", help="Resolve the requirements live, even with a lock.")
]

# --- the target machine ---------------------------------------------------------------

GpuOpt = Annotated[
    str,
    typer.Option(
        "--gpu", help="auto, none, or a compute capability like 8.9 to plan for that GPU."
    ),
]
TargetGpuOpt = Annotated[
    str,
    typer.Option("--gpu", help="The target's compute capability (8.9), or none for a CPU image."),
]
"""`--gpu` of a build for another machine (`image`): required, never detected."""
CudaDriverOpt = Annotated[
    str | None,
    typer.Option(
        "--cuda-driver", help="With --gpu CC: newest CUDA the target's driver supports (12.8)."
    ),
]
CudaToolkitOpt = Annotated[
    str | None,
    typer.Option(
        "--cuda-toolkit",
        help="X.Y: plan as if nvcc X.Y (and its host compiler) were installed (with "
        "--dry-run); none: without a CUDA toolkit (no SageAttention source build).",
    ),
]
PlatformOpt = Annotated[
    str | None,
    typer.Option("--platform", help="linux or windows (with --dry-run: plan for another OS)."),
]
PythonOpt = Annotated[
    str | None, typer.Option("--python", help="Python X.Y for the venv (default: the config's).")
]
ImagePlatformOpt = Annotated[str, typer.Option("--platform", help="The image's OS (only linux).")]
"""`--platform` of an image: always given a value (linux)."""
LockPlatformOpt = Annotated[
    str | None, typer.Option("--platform", help="linux or windows (default: both).")
]
"""`--platform` of `lock`: every platform when not given."""
LockPythonOpt = Annotated[
    str | None,
    typer.Option(
        "--python",
        help="Python X.Y to lock for (default: python.default, and the Pythons of the "
        "locks already there).",
    ),
]
"""`--python` of `lock`: the default Python and those already locked when not given."""
PortOpt = Annotated[int, typer.Option("--port", min=1, max=65535, help="ComfyUI's port.")]
ImagePortOpt = Annotated[
    int | None,
    typer.Option("--port", min=1, max=65535, help="ComfyUI's port (default: the image's)."),
]
"""`--port` of `image kube`: the image's own port unless given."""

# --- the ComfyUI source ---------------------------------------------------------------

ComfyuiUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--comfyui-url",
        help="Where ComfyUI comes from (URL, path or git bundle; an image copies a local "
        "bundle in).",
    ),
]
ComfyuiRefOpt = Annotated[
    str | None,
    typer.Option("--comfyui-ref", help="Tag, branch or commit instead of the pinned commit."),
]
LockComfyuiRefOpt = Annotated[
    str | None,
    typer.Option(
        "--comfyui-ref",
        help="Read requirements.txt at this ref instead of the pinned commit (a source "
        "without the commit but with the same tree); the lock still records the pin.",
    ),
]
"""`--comfyui-ref` of `lock`: where to read the requirements; the pin itself does not change."""

# --- package indexes and artifacts ----------------------------------------------------

TorchIndexOpt = Annotated[
    str,
    typer.Option(
        "--torch-index",
        help="auto, cpu, a variant (cu128), default (uv's default index) or an index URL.",
    ),
]
UpdateTorchIndexOpt = Annotated[
    str | None,
    typer.Option(
        "--torch-index",
        help="auto, cpu, a variant (cu128), default (uv's default index) or an index URL; "
        "default: what the install recorded.",
    ),
]
"""`--torch-index` of `update`: the install's recorded index unless given."""
IndexUrlOpt = Annotated[
    str | None, typer.Option("--index-url", help="Package index for every uv call (a mirror).")
]
ExtraIndexUrlOpt = Annotated[
    list[str] | None,
    typer.Option("--extra-index-url", help="Extra package index (repeatable)."),
]
FindLinksOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--find-links", help="Folder or URL of wheels (repeatable; an image copies local ones in)."
    ),
]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Use only caches and local files.")]
AllowUnverifiedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unverified", help="Accept files without a checksum (sha256) in their manifest."
    ),
]
AllowInstallScriptOpt = Annotated[
    bool,
    typer.Option(
        "--allow-install-script",
        help="Run the custom nodes' install.py (arbitrary code: not run unless given).",
    ),
]

# --- steps ----------------------------------------------------------------------------

MinFreeGbOpt = Annotated[
    float | None, typer.Option("--min-free-gb", help="Free disk space DIR needs (GiB).")
]
OnlyOpt = Annotated[
    list[str] | None, typer.Option("--only", help="Run only these steps (comma separated).")
]
SkipOpt = Annotated[list[str] | None, typer.Option("--skip", help="Skip these steps.")]
ForceOpt = Annotated[list[str] | None, typer.Option("--force", help="Redo these steps.")]


def build_request(kind: type[R], values: Mapping[str, Any], **given: Any) -> R:
    """Build a command's request from the parsed options, every field by keyword.

    A command names its parameters like its request's fields, so the request is made
    from them without a list of positional arguments to keep in order. Repeatable
    options arrive as lists (or None) and become tuples; parameters that are not fields
    (`as_json`, `verbose`, ...) stay behind.

    Args:
        kind: The request's dataclass, e.g.
            [`InstallOptions`][installer.plan.records.InstallOptions].
        values: The command's parameters (its `locals()` at the top of the function).
        **given: Fields whose value is not a parameter as typed (an absolute DIR, the command
            line); they win over ``values``.

    Returns:
        The request.

    Raises:
        TypeError: ``kind`` is not a dataclass, or ``given`` names a field it lacks.
    """
    if not dataclasses.is_dataclass(kind):
        raise TypeError(f"{kind.__name__} is not a dataclass")
    fields = {field.name: field for field in dataclasses.fields(kind)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise TypeError(f"{kind.__name__} has no field {', '.join(unknown)}")
    parsed = {
        name: _as_field(values[name], field.default == ())
        for name, field in fields.items()
        if name in values
    }
    return kind(**{**parsed, **given})


def _as_field(value: Any, repeatable: bool) -> Any:
    """A repeatable option's list (None when not given) as the request's tuple."""
    if isinstance(value, list) or (repeatable and value is None):
        return tuple(value or ())
    return value
