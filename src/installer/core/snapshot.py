"""A snapshot: one versioned JSON file with everything needed to rebuild an install.

`comfy-install snapshot save DIR FILE` writes it, `snapshot restore FILE DIR` rebuilds from it:
ComfyUI's URL and commit, each custom node's URL and commit, the torch build and its index,
each accelerator with its sha256 or source commit, the resolved requirements with their hashes
(a lock file in the lock format, [`installer.core.lockfile`][installer.core.lockfile]), the
platform and the Python, and the configuration the install was made from with its pins set to
what the install holds. Plain data; the commands read and write it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from installer.core.nodes import InstallScript
from installer.core.uv_options import IndexOptions

SNAPSHOT_SCHEMA_VERSION = 1
SNAPSHOT_KIND: Literal["comfy-install-snapshot"] = "comfy-install-snapshot"


class SnapshotSource(BaseModel):
    """A git source pinned to a commit."""

    url: str
    ref: str | None = None
    commit: str


class SnapshotNode(BaseModel):
    """A custom node of the install."""

    name: str
    url: str
    ref: str | None = None
    commit: str
    origin: Literal["added", "config"] = "added"
    requirements: list[str] = Field(default_factory=list)
    skipped_requirements: list[str] = Field(default_factory=list)
    no_deps: bool = False
    install_script: InstallScript = "none"


class SnapshotTorch(BaseModel):
    """The torch build of the install, and where it came from."""

    versions: dict[str, str] = Field(description="The trio's installed versions.")
    variant: str = Field(description="The torch variant (`default`: uv's default index).")
    index_url: str | None = None
    cuda: str | None = None


class SnapshotAccelerator(BaseModel):
    """An accelerator package step 10 installed."""

    name: str
    kind: str
    version: str | None = None
    requirement: str | None = None
    sha256: str | None = Field(default=None, description="The wheel's sha256 (a wheel file).")
    source_url: str | None = Field(default=None, description="The source's git URL (a build).")
    source_commit: str | None = Field(
        default=None, description="The commit built from (a source build): a restore builds it."
    )


class Snapshot(BaseModel):
    """The whole snapshot file."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SNAPSHOT_SCHEMA_VERSION
    kind: Literal["comfy-install-snapshot"] = SNAPSHOT_KIND
    created_at: str
    tool_version: str
    platform: str
    python: str = Field(description="The venv's Python version (`3.12.7`).")
    comfyui: SnapshotSource
    torch: SnapshotTorch
    accelerators: list[SnapshotAccelerator] = Field(default_factory=list)
    nodes: list[SnapshotNode] = Field(default_factory=list)
    gpu: dict[str, Any] = Field(default_factory=dict, description="The gpu step's record.")
    index: IndexOptions = Field(default_factory=IndexOptions)
    lock_target: str = Field(description="The lock's target name, e.g. `linux-default-py312`.")
    lock: str = Field(description="The resolved requirements with hashes: a lock file's text.")
    config: dict[str, Any] = Field(description="dependencies.json, pinned to this install.")

    @property
    def python_minor(self) -> str:
        """The Python's minor version (`3.12`)."""
        return ".".join(self.python.split(".")[:2])
