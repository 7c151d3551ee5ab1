"""The generations of an install as data: `DIR/.comfy-install/generations.json`.

A generation is one environment the tool owns: a venv and a ComfyUI checkout at one
commit, verified together. Generation 1 is the install as `install` made it (`DIR/venv`,
`DIR/ComfyUI`, adopted in place); later ones live under
`DIR/.comfy-install/generations/<id>/` beside it. Which one is current is not in this
file but in the pointer file the switch replaces in one step
([`installer.plan.generations`][installer.plan.generations]).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from installer.core.facts import pure_path

GENERATIONS_SCHEMA_VERSION = 1

POINTER_NAME = "current-generation"
GENERATIONS_FOLDER = "generations"
REGISTRY_NAME = "generations.json"
STATE_FOLDER = ".comfy-install"
DATA_FOLDER = "ComfyUI"
"""The folder of DIR that holds the user's ComfyUI folders (generation 1's checkout)."""
EXTRA_PATHS_NAME = "extra_model_paths.yaml"


def generation_root(install_dir: PurePath, generation_id: int, platform: str) -> PurePath:
    """Return the install root of a generation: DIR for 1, else under DIR's state folder.

    Args:
        install_dir: DIR.
        generation_id: The generation's number (1 or more).
        platform: The target OS (`windows` gives a `PureWindowsPath`).
    """
    base = pure_path(platform, install_dir)
    if generation_id <= 1:
        return base
    return base / STATE_FOLDER / GENERATIONS_FOLDER / str(generation_id)


def owning_install(root: PurePath) -> PurePath:
    """Return DIR for an install root: the root itself, or the DIR a generation's root is under.

    Args:
        root: DIR, or a generation's root (`DIR/.comfy-install/generations/<id>`).
    """
    parts = root.parts
    if (
        len(parts) >= 4
        and parts[-3:-1] == (STATE_FOLDER, GENERATIONS_FOLDER)
        and parts[-1].isdigit()
    ):
        return root.parents[2]
    return root


def data_root(install_dir: PurePath, platform: str) -> PurePath:
    """Return the folder holding the user's ComfyUI folders: `DIR/ComfyUI`.

    Args:
        install_dir: DIR.
        platform: The target OS.
    """
    return pure_path(platform, install_dir) / DATA_FOLDER


def parse_pointer(text: str | None) -> int:
    """Return the generation a pointer file names (1 when there is none or it is unreadable).

    Args:
        text: The pointer file's content, None when it does not exist.
    """
    if text is None:
        return 1
    value = text.strip()
    return int(value) if value.isdigit() and int(value) >= 1 else 1


GenerationStatus = Literal["building", "ready", "failed"]


class Generation(BaseModel):
    """One generation: where it lives, what it holds, and whether it was verified."""

    model_config = ConfigDict(extra="ignore")

    id: int
    root: str = Field(description="The generation's install root (generation 1: DIR itself).")
    comfyui_url: str | None = None
    comfyui_ref: str | None = None
    comfyui_commit: str | None = None
    torch: str | None = Field(default=None, description="torch's version, e.g. 2.9.1+cu128.")
    torch_cuda: str | None = None
    packages: dict[str, str] = Field(
        default_factory=dict, description="The torch set held in the venv, by name."
    )
    created_at: str
    status: GenerationStatus = "building"
    verified_at: str | None = None
    adopted: bool = Field(default=False, description="The first install, taken over in place.")
    message: str = ""
    log: str | None = None

    @property
    def verified(self) -> bool:
        """True when the generation passed its verify step."""
        return self.status == "ready"


class GenerationsFile(BaseModel):
    """The whole `generations.json`."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = GENERATIONS_SCHEMA_VERSION
    generations: list[Generation] = Field(default_factory=list)

    def get(self, generation_id: int) -> Generation | None:
        """Return the generation with this id, or None.

        Args:
            generation_id: The generation's number.
        """
        return next((g for g in self.generations if g.id == generation_id), None)

    def put(self, generation: Generation) -> None:
        """Add ``generation``, or replace the one with its id.

        Args:
            generation: The record to store.
        """
        self.generations = [g for g in self.generations if g.id != generation.id]
        self.generations.append(generation)
        self.generations.sort(key=lambda g: g.id)
