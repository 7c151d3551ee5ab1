"""ComfyUI's model kinds: the folders under `ComfyUI/models/`, their legacy names, safe file paths.

The vocabulary the model manifest is checked against: the kinds as ComfyUI v0.3.77 defines them
([`MODEL_KINDS`][installer.plan.model_kinds.MODEL_KINDS]), the legacy names `clip`, `unet` and
`t2i_adapter` mapped to the kind whose folder ComfyUI uses for new files
([`KIND_ALIASES`][installer.plan.model_kinds.KIND_ALIASES]), and the rule that keeps a manifest's
file name inside its `models/<kind>/` folder. Pure: data in, data out.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from installer.core.errors import ConfigError
from installer.core.filenames import safe_filename

MODEL_KINDS: tuple[str, ...] = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)
"""The model kinds of ComfyUI v0.3.77 (`folder_paths.py`), each a folder under `models/`.

`custom_nodes`, also registered there, is not a model kind.
"""

KIND_ALIASES: Mapping[str, str] = MappingProxyType(
    {"clip": "text_encoders", "unet": "diffusion_models", "t2i_adapter": "controlnet"}
)
"""Legacy kind names and the kind they mean.

`clip` and `unet` are ComfyUI's own legacy names (`folder_paths.map_legacy`);
`t2i_adapter` is a folder ComfyUI searches for controlnets. New files go to
the folder of the kind they map to.
"""

LEGACY_FOLDERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {kind: tuple(a for a, k in KIND_ALIASES.items() if k == kind) for kind in KIND_ALIASES.values()}
)
"""Kind → the older folders ComfyUI still searches for it (`text_encoders` → `clip`)."""


def canonical_kind(kind: str) -> str | None:
    """Return the kind ``kind`` names, aliases resolved, or `None` if ComfyUI has no such kind.

    Args:
        kind: A kind or legacy alias, e.g. `loras`, `clip`, `unet`.

    Returns:
        A member of `MODEL_KINDS` (`clip` → `text_encoders`), or `None`.
    """
    kind = KIND_ALIASES.get(kind, kind)
    return kind if kind in MODEL_KINDS else None


def _kinds_hint() -> str:
    aliases = ", ".join(f"{alias} → {kind}" for alias, kind in KIND_ALIASES.items())
    return f"Use one of: {', '.join(MODEL_KINDS)} (aliases: {aliases})."


def resolve_kind(kind: str, *, where: str) -> str:
    """Return the kind ``kind`` names, or raise a ConfigError that says where it came from.

    Args:
        kind: A kind or legacy alias from a manifest.
        where: The place shown in the error, e.g. ``models.json: models[3].kind``.

    Returns:
        A member of `MODEL_KINDS`.

    Raises:
        ConfigError: ComfyUI v0.3.77 has no such kind; the hint lists the valid ones.
    """
    resolved = canonical_kind(kind)
    if resolved is None:
        raise ConfigError(f"{where}: unknown model kind {kind!r}.", _kinds_hint())
    return resolved


def model_relative_path(filename: str, *, where: str) -> tuple[str, ...]:
    """Split a manifest file name into safe path parts under `models/<kind>/`.

    A name may hold subfolders with `/` (`sdxl/base.safetensors`); every part
    must be a plain name that
    [`safe_filename`][installer.core.filenames.safe_filename] leaves unchanged, so
    `..`, absolute paths, backslashes and drive letters are refused.

    Args:
        filename: The entry's `filename`.
        where: The place shown in the error, e.g. ``models[2].filename``.

    Returns:
        The parts, the file name last.

    Raises:
        ConfigError: A part would leave the kind's folder or is not a safe name.
    """
    parts = tuple(filename.split("/"))
    for part in parts:
        if not part or part in (".", "..") or safe_filename(part) != part:
            raise ConfigError(
                f"{where}: {filename!r} would write outside its models/<kind>/ folder "
                "or is not a safe file name.",
                "Use a plain file name (optionally in subfolders joined with '/'); "
                "the kind chooses the folder.",
            )
    return parts


def where_in(source: str | None, path: str) -> str:
    """Return the JSON path ``path`` prefixed with the file it is in (when known), for errors.

    Args:
        source: The manifest file, or `None`.
        path: A JSON path such as `models[3].kind`.

    Returns:
        `source: path`, or `path` alone.
    """
    return f"{source}: {path}" if source else path


def kind_folders(kind: str) -> tuple[str, ...]:
    """Return the folders ComfyUI reads ``kind`` from: its own, then its legacy ones.

    Args:
        kind: A member of `MODEL_KINDS`.

    Returns:
        The folder names (`text_encoders`, `clip` for `text_encoders`).
    """
    return (kind, *LEGACY_FOLDERS.get(kind, ()))
