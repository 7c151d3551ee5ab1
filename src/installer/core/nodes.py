"""What `DIR/.comfy-install/nodes.json` holds: the nodes added after install, their resolution.

`comfy-install nodes add` writes it, `nodes remove` and `nodes list` read it, `snapshot save`
copies it. The resolution is the text of `uv pip compile --generate-hashes` (the entry format
of the lock files, [`installer.core.lockfile`][installer.core.lockfile]): every package with its
version, its hashes and the `# via` lines that say which node or ComfyUI needs it. Reading and
writing the file is [`installer.nodes.record`][installer.nodes.record]'s job; these are plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from installer.core.uv_options import IndexOptions

NODES_SCHEMA_VERSION = 1

InstallScript = Literal["none", "ran", "not run"]
"""A node's `install.py`: it has none, it ran (`--allow-install-script`), or it was not run."""


class NodeRecord(BaseModel):
    """One custom node the tool installed, pinned to its commit."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Its folder under ComfyUI/custom_nodes/.")
    url: str = Field(description="Where it was cloned from (a git URL or a local path).")
    ref: str | None = Field(default=None, description="The ref asked for (None: the default).")
    commit: str = Field(description="The commit checked out.")
    origin: Literal["added", "config"] = Field(
        default="added", description="`nodes add`, or step 9 (dependencies.json's custom_nodes)."
    )
    requirements: list[str] = Field(
        default_factory=list, description="Its requirements as resolved (after skips)."
    )
    skipped_requirements: list[str] = Field(default_factory=list)
    no_deps: bool = False
    install_script: InstallScript = "none"
    installed_packages: list[str] = Field(
        default_factory=list,
        description="Packages its `nodes add` brought into the venv (removal candidates).",
    )
    added_at: str = ""


class RemovedNode(BaseModel):
    """A node `nodes remove` took out: where its folder went and which packages left."""

    name: str
    commit: str
    moved_to: str
    removed_packages: list[str] = Field(default_factory=list)
    removed_at: str = ""


class NodesState(BaseModel):
    """The whole `nodes.json`."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = NODES_SCHEMA_VERSION
    nodes: list[NodeRecord] = Field(default_factory=list)
    resolution: str = Field(
        default="", description="The last resolution (uv pip compile output, hashes, via)."
    )
    index: IndexOptions = Field(default_factory=IndexOptions)
    removed: list[RemovedNode] = Field(default_factory=list)

    def node(self, name: str) -> NodeRecord | None:
        """Return the record of the node in folder ``name`` (None: not recorded).

        Args:
            name: The node's folder name.
        """
        return next((node for node in self.nodes if node.name == name), None)


@dataclass(frozen=True)
class ResolutionConflict:
    """What uv's resolver error names: the requirements it could not satisfy together."""

    requirements: tuple[str, ...]
    """Requirement texts uv named after `you require`, e.g. `shared-lib==1.0`."""
    depends: tuple[tuple[str, str], ...] = ()
    """``(package, requirement)`` pairs of its `X depends on Y` clauses."""
    summary: str = ""
    """uv's error in one line."""


@dataclass(frozen=True)
class NodeFiles:
    """A custom node's dependency files as read from its folder (None: the file is absent)."""

    requirements_txt: str | None
    """The text of its `requirements.txt`."""
    pyproject: dict[str, Any] | None
    """Its parsed `pyproject.toml`."""
    install_script: bool = False
    """It has an `install.py`."""


@dataclass(frozen=True)
class NodeFolder:
    """A custom node folder that exists, as git sees it."""

    head: str | None
    """The commit its HEAD is at; None: not a git checkout (or its HEAD cannot be read)."""
    changes: tuple[str, ...] = ()
    """Tracked files with local changes, as `git status --porcelain` names them."""
