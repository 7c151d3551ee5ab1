"""Where and how step 10 installs: the venv, its uv, and the machine's facts, as one record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from installer.core.config import ToolsManifest
from installer.core.facts import BuildHost, GpuReport
from installer.edges.uv import Uv


@dataclass(frozen=True)
class StepTarget:
    """Where and how step 10 installs: the venv, its uv, and the machine's facts."""

    python_exe: Path
    install_path: Path
    platform: str
    gpu: GpuReport
    uv: Uv
    manifest: ToolsManifest
    torch_index_url: str | None = None
    build_host: BuildHost | None = None
    """Compilers, git, cores and memory for source builds (None: none is planned)."""
    allow_unverified: bool = False
    download_jobs: int = 4
    lock: Path | None = None
    """A lock file whose pins (and hashes) also constrain the index packages."""
