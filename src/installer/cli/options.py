"""Option types shared by the commands that plan an environment (`update`, later `install`).

Defined once, by keyword, so every command that takes them spells and documents them
the same way (pdm's `cli/options.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Another dependencies.json.")]
ToolsManifestOpt = Annotated[
    Path | None,
    typer.Option("--tools-manifest", help="Another tools_manifest.json (artifact checksums)."),
]
GpuOpt = Annotated[
    str,
    typer.Option(
        "--gpu", help="auto, none, or a compute capability like 8.9 to plan for that GPU."
    ),
]
CudaDriverOpt = Annotated[
    str | None,
    typer.Option("--cuda-driver", help="With --gpu CC: newest CUDA the target driver supports."),
]
PythonOpt = Annotated[str | None, typer.Option("--python", help="Python for the venv.")]
ComfyRefOpt = Annotated[
    str | None,
    typer.Option("--comfyui-ref", help="Tag, branch or commit instead of the pinned commit."),
]
ComfyUrlOpt = Annotated[
    str | None,
    typer.Option("--comfyui-url", help="ComfyUI's source (URL, path or git bundle)."),
]
TorchIndexOpt = Annotated[
    str | None,
    typer.Option(
        "--torch-index",
        help="auto, cpu, a variant (cu128), default (uv's default index) or an index URL; "
        "default: what the install recorded.",
    ),
]
IndexUrlOpt = Annotated[
    str | None, typer.Option("--index-url", help="Package index for every uv call (a mirror).")
]
ExtraIndexOpt = Annotated[
    list[str] | None, typer.Option("--extra-index-url", help="Extra package index (repeatable).")
]
FindLinksOpt = Annotated[
    list[str] | None, typer.Option("--find-links", help="Folder or URL of wheels (repeatable).")
]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Use only caches and local files.")]
AllowUnverifiedOpt = Annotated[
    bool,
    typer.Option("--allow-unverified", help="Accept artifacts without a checksum in the manifest."),
]
MinFreeOpt = Annotated[
    float | None, typer.Option("--min-free-gb", help="Free disk space DIR needs (GiB).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan; change nothing.")]
